// A run's state between steps and its round trip through an HDF5 checkpoint.
#include "r1dist/train/train_state.h"

#include <cstdlib>
#include <utility>

#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/log/log.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/train/rng_state.h"

namespace r1dist {

namespace {

// A flat fp32 host copy of `t`: page-locked and asynchronous from a GPU (the caller waits).
at::Tensor to_host_flat(const at::Tensor& t) {
  auto h = at::empty({t.numel()}, at::TensorOptions().dtype(at::kFloat).pinned_memory(t.is_cuda()));
  h.copy_(t.detach().reshape({-1}), /*non_blocking=*/t.is_cuda());
  return h;
}

void copy_into(const at::Tensor& dst, const std::vector<float>& src) {
  dst.copy_(at::from_blob(const_cast<float*>(src.data()), dst.sizes(), at::kFloat));
}

}  // namespace

std::string save_checkpoint(const Config& cfg, const TrainState& state, const RunIdentity& id,
                            const Qwen2Model& model, AdamW& opt, const at::Device& device, CheckpointWriter& writer) {
  const auto& pg = dist_group();
  // Rank 0 is the only writer.
  const auto rngs = dist_gather_strings(save_rng(device), 0, "MPI_Gather of the RNG states for the checkpoint");
  if (pg.rank != 0) return "";
  CheckpointState s;
  s.step = state.step;
  s.rows_consumed = state.step * id.global_batch;
  s.global_batch = id.global_batch;
  s.world_size = pg.world;
  s.config_toml = cfg.to_toml();
  s.model_path = cfg.model.path;
  s.model_hash = id.model_hash;
  s.version = R1DIST_VERSION;
  // The adapters and the two moments leave the device as three flat copies (page-locked on a
  // GPU: asynchronous, one wait for all), not one copy per adapter tensor; the writer's thread
  // splits them into the state's arrays (CheckpointJob::finish).
  const at::Tensor flat = model.lora().flat();
  struct Part {
    NamedArray array;
    int64_t offset, length;  // its values in flat
  };
  std::vector<Part> parts;
  for (auto& [name, t] : model.lora().named_parameters()) {
    check(t.is_contiguous() && t.storage().is_alias_of(flat.storage()) && t.scalar_type() == at::kFloat,
          "checkpoint: adapter tensor " + name + " is not a contiguous fp32 view of the flat LoRA buffer");
    NamedArray a;
    a.name = name;
    a.shape.assign(t.sizes().begin(), t.sizes().end());
    parts.push_back(Part{std::move(a), t.storage_offset() - flat.storage_offset(), t.numel()});
  }
  const at::Tensor host_flat = to_host_flat(flat), host_m = to_host_flat(opt.exp_avg()),
                   host_v = to_host_flat(opt.exp_avg_sq());
  compat::synchronize(device);
  s.adam_step = opt.steps();
  s.lr = state.last_lr;
  s.schedule = to_string(cfg.train.schedule);
  s.rng_states = rngs;
  s.has_best = state.has_best;
  s.best_eval_loss = state.has_best ? state.best_eval : 0.0;
  s.extra["dataset_fingerprint"] = id.data_fingerprint;
  s.extra["rows_fingerprint"] = id.rows_fingerprint;
  s.extra["weights_fingerprint"] = id.weights;
  s.extra["comm_backend"] = id.comm_backend;
  s.extra["best_checkpoint"] = state.best_path;
  s.extra["evals_without_improvement"] = std::to_string(state.evals_without_improvement);
  if (!state.stop_reason.empty()) {
    s.extra["stop_reason"] = state.stop_reason;
    s.extra["adapter_is_best"] = state.adapter_is_best ? "1" : "0";
  }
  const auto path = checkpoint_path(cfg.output.dir, state.step);
  auto finish = [parts = std::move(parts), host_flat, host_m, host_v](CheckpointState& st) mutable {
    const float* f = host_flat.data_ptr<float>();
    for (auto& p : parts) {
      p.array.data.assign(f + p.offset, f + p.offset + p.length);
      st.adapters.push_back(std::move(p.array));
    }
    st.adam_m.assign(host_m.data_ptr<float>(), host_m.data_ptr<float>() + host_m.numel());
    st.adam_v.assign(host_v.data_ptr<float>(), host_v.data_ptr<float>() + host_v.numel());
  };
  writer.write(CheckpointJob{path, std::move(s), cfg.output.dir, cfg.output.keep, state.best_path, std::move(finish)});
  return path;
}

TrainState load_checkpoint(const ResumeChoice& choice, const Config& cfg, const Qwen2Model& model, AdamW& opt,
                           const at::Device& device) {
  const auto& pg = dist_group();
  const auto& s = choice.state;
  const auto& path = choice.path;
  if (!choice.overridden.empty())
    log::warn("resume: continuing from ", path, " although its settings differ (--resume-anyway):",
              describe_changes(choice.overridden));
  if (const auto moved = layout_config_changes(s.config_toml, cfg.to_toml()); !moved.empty())
    log::warn("resume: continuing from ", path, " in another layout of the same steps (the same loss and gradients "
              "to rounding, not bitwise the uninterrupted run); set these keys back to keep its layout:",
              describe_changes(moved));
  const auto params = model.lora().named_parameters();
  check(params.size() == s.adapters.size(),
        "cannot resume from " + path + ": it has " + std::to_string(s.adapters.size()) +
            " adapter tensors, the model has " + std::to_string(params.size()) + " (different lora settings?)");
  {
    at::NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& [name, t] = params[i];
      const auto& a = s.adapters[i];
      check(a.name == name, "cannot resume from " + path + ": adapter " + std::to_string(i) + " is " + a.name +
                                ", the model expects " + name);
      check(int64_t(a.data.size()) == t.numel(), "cannot resume from " + path + ": " + name + " has " +
                                                     std::to_string(a.data.size()) + " values, expected " +
                                                     std::to_string(t.numel()));
      copy_into(t, a.data);
    }
    check(int64_t(s.adam_m.size()) == opt.exp_avg().numel() && s.adam_v.size() == s.adam_m.size(),
          "cannot resume from " + path + ": optimizer state size differs");
    copy_into(opt.exp_avg(), s.adam_m);
    copy_into(opt.exp_avg_sq(), s.adam_v);
  }
  opt.set_steps(s.adam_step);
  TrainState state;
  state.step = s.step;
  state.last_lr = s.lr;
  state.has_best = s.has_best;
  state.best_eval = s.best_eval_loss;
  state.last_path = path;
  if (auto it = s.extra.find("best_checkpoint"); it != s.extra.end()) state.best_path = it->second;
  if (auto it = s.extra.find("evals_without_improvement"); it != s.extra.end())
    state.evals_without_improvement = std::strtoll(it->second.c_str(), nullptr, 10);
  if (auto it = s.extra.find("stop_reason"); it != s.extra.end()) state.stop_reason = it->second;
  if (auto it = s.extra.find("adapter_is_best"); it != s.extra.end()) state.adapter_is_best = it->second == "1";
  if (s.world_size == pg.world && int(s.rng_states.size()) == pg.world) {
    load_rng(s.rng_states[size_t(pg.rank)], device);
  } else {
    // A different world size: the ranks' streams cannot map one to one; reseed per rank.
    at::manual_seed(rank_seed(cfg.train.seed, pg.rank, s.step));
    log::warn("resume: checkpoint written by ", s.world_size, " ranks, running on ", pg.world,
              "; RNG streams reseeded (only LoRA dropout uses them)");
  }
  log::info("resumed from ", path, " at step ", s.step, " (", s.rows_consumed, " rows consumed)");
  return state;
}

}  // namespace r1dist
