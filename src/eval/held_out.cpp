#include "r1dist/eval/held_out.h"

#include <ATen/ATen.h>

#include "r1dist/dist/process_group.h"
#include "r1dist/eval/drift.h"

namespace r1dist {

EvalRecord evaluate_held_out(const Qwen2Model& model, const std::vector<Example>& rows, const HeldOutSettings& s,
                             BaseStates& base, Communicator& comm, int64_t step) {
  const auto& pg = dist_group();
  // This rank's rows: the first kl_rows of them (loss and drift from one tuned pass, the base
  // pass cached in `base`) and the rest (loss only).
  std::vector<const Example*> loss_only, with_drift;
  const int64_t kl_rows = std::min<int64_t>(s.kl_rows, int64_t(rows.size()));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (int(i % size_t(pg.world)) != pg.rank) continue;
    (int64_t(i) < kl_rows ? with_drift : loss_only).push_back(&rows[i]);
  }
  const auto rest = eval_loss(model, loss_only, s.capacity);
  const auto both = loss_and_drift(model, with_drift, s.capacity, base);
  SumCount loss{rest.sum + both.loss.sum, rest.count + both.loss.count};
  const auto& kl = both.drift.kl;
  auto sums = at::tensor(std::vector<double>{loss.sum, double(loss.count), kl.sum, double(kl.count)}, at::kDouble)
                  .to(model.device());
  comm.allreduce_sum(sums);
  sums = sums.to(at::kCPU);
  const auto* p = sums.data_ptr<double>();
  EvalRecord r;
  r.step = step;
  r.eval_loss = p[1] > 0 ? p[0] / p[1] : 0.0;
  r.eval_tokens = int64_t(p[1]);
  r.kl = p[3] > 0 ? p[2] / p[3] : 0.0;
  return r;
}

}  // namespace r1dist
