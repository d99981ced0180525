#include "r1dist/train/step.h"

#include <ATen/ATen.h>

#include <cmath>

#include "r1dist/base/error.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/data/packing.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/dist/stop_signals.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/tensor/token_batch.h"

namespace r1dist {

StepRunner::StepRunner(const Config& cfg, const std::vector<Example>& train, const BatchPlan& plan,
                       Qwen2Model& model, AdamW& opt, Communicator& comm, const FaultPlan& faults, int32_t pad_id,
                       const RecomputePlan& recompute)
    : cfg_(cfg), train_(train), plan_(plan), model_(model), opt_(opt), comm_(comm), faults_(faults), pad_id_(pad_id),
      recompute_(recompute) {
  for (const auto& e : train_) loss_tokens_.push_back(loss_tokens(e));
  lengths_ = example_lengths(train_);
  buffer_ = model_.lora().reduce_buffer();
  buffer_.zero_();
}

StepOutcome StepRunner::run(int64_t k) {
  const auto& pg = dist_group();
  StepOutcome out;
  out.lr = lr_at(cfg_.train.schedule, cfg_.train.lr, k, cfg_.train.warmup_steps, cfg_.train.steps);
  for (int64_t i : plan_.step_rows(k)) out.loss_tokens += loss_tokens_[size_t(i)];
  check(out.loss_tokens > 0, "step " + std::to_string(k + 1) + " has no loss tokens (all labels masked)");

  auto grad = model_.lora().flat_grad();
  const int64_t n_grad = grad.numel();
  auto loss_slot = buffer_.narrow(0, n_grad, 1);
  auto stop_slot = buffer_.narrow(0, n_grad + 1, 1);
  // lm_head + cross-entropy in token chunks (model/lm_loss.h): the full logits never exist.
  auto forward_backward = [&](const TokenBatch& b, const PackedRows* packed) {
    const auto loss = chunked_lm_loss_sum(model_.hidden_states_train(b.ids, recompute_, packed),
                                          model_.lm_head_weight(), b.labels) /
                      double(out.loss_tokens);
    loss.backward();
    loss_slot.add_(loss.detach());
  };
  if (cfg_.data.packing) {
    const auto rows = plan_.step_rows(k);
    for (int64_t i : rows) out.real_tokens += lengths_[size_t(i)];
    out.slot_tokens = out.real_tokens;
    for (const auto& mb :
         pack_rank_share(rows, lengths_, cfg_.data.max_seq_len, pg.rank, pg.world, cfg_.train.micro_batch)) {
      std::vector<const Example*> rows;
      for (const auto& s : mb)
        for (int64_t i : s.rows) rows.push_back(&train_[size_t(i)]);
      const auto c = collate_packed(rows);
      const auto layout = packed_rows(c.row_lengths, model_.device(), model_.dtype());
      forward_backward(to_device(c, model_.device()), &layout);
    }
  } else {
    const auto n = unpacked_slots(plan_, k, lengths_, pg.world, cfg_.train.micro_batch, cfg_.train.grad_accum);
    out.real_tokens = n.real;
    out.slot_tokens = n.slots;
    for (const auto& mb : plan_.rank_micro_batches(k, pg.rank, pg.world, cfg_.train.micro_batch,
                                                   cfg_.train.grad_accum)) {
      std::vector<const Example*> rows;
      for (int64_t i : mb) rows.push_back(&train_[size_t(i)]);
      forward_backward(to_device(collate(rows, pad_id_), model_.device()), nullptr);
    }
  }
  faults_.before_allreduce(buffer_, pg.rank, k + 1);
  if (stop_signal() != 0) stop_slot.fill_(1.0);
  comm_.allreduce_sum(buffer_);
  out.comm_seconds = comm_.take_seconds();
  const auto norm = clip_grad_norm(grad, cfg_.train.max_grad_norm);
  // The step's one sync: loss, norm and the stop votes together.
  const auto host = at::cat({loss_slot.to(at::kDouble), norm.reshape({1}), stop_slot.to(at::kDouble)}).cpu();
  out.loss = host[0].item<double>();
  out.grad_norm = host[1].item<double>();
  out.stop = host[2].item<double>() > 0;
  if (!std::isfinite(out.loss) || !std::isfinite(out.grad_norm))
    throw NonFiniteStep("non-finite " + std::string(std::isfinite(out.loss) ? "gradient" : "loss") + " at step " +
                std::to_string(k + 1) + " (loss " + std::to_string(out.loss) + ", grad norm " +
                std::to_string(out.grad_norm) + ")");
  {
    at::NoGradGuard ng;
    auto flat = model_.lora().flat();
    opt_.step(flat, grad, out.lr);
    faults_.after_update(flat, pg.rank, k + 1);
    // One reduction over the flat adapters (every rank's copy is the same): an update that
    // made a value NaN or inf (an AdamW epsilon that underflows, an overflow) stops the run
    // here, before any checkpoint or export holds it.
    if (!at::isfinite(flat).all().item<bool>())
      throw NonFiniteStep("the AdamW update of step " + std::to_string(k + 1) +
                          " made adapter values non-finite (NaN or inf) although its loss (" + std::to_string(out.loss) +
                          ") and gradient norm (" + std::to_string(out.grad_norm) + ") were finite");
  }
  buffer_.zero_();
  return out;
}

}  // namespace r1dist
