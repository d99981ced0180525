#include "r1dist/train/train_state.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <sstream>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/base/hash.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/log/log.h"

namespace r1dist {

namespace {

// Generator states (CPU, and the rank's CUDA device when used) as one byte string:
// per state an 8-byte little-endian length and the bytes.
std::string save_rng(const at::Device& device) {
  std::string out;
  auto add = [&](at::Generator gen) {
    at::Tensor st;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      st = gen.get_state();
    }
    const uint64_t n = static_cast<uint64_t>(st.numel());
    out.append(reinterpret_cast<const char*>(&n), 8);
    out.append(static_cast<const char*>(st.data_ptr()), n);
  };
  add(at::globalContext().defaultGenerator(at::kCPU));
  if (device.is_cuda()) add(at::globalContext().defaultGenerator(device));
  return out;
}

void load_rng(const std::string& bytes, const at::Device& device) {
  size_t pos = 0;
  auto next = [&](at::Generator gen) {
    check(pos + 8 <= bytes.size(), "checkpoint RNG state is truncated");
    uint64_t n = 0;
    std::memcpy(&n, bytes.data() + pos, 8);
    pos += 8;
    check(pos + n <= bytes.size(), "checkpoint RNG state is truncated");
    auto st = at::empty({static_cast<int64_t>(n)}, at::kByte);
    std::memcpy(st.data_ptr(), bytes.data() + pos, n);
    pos += n;
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(st);
  };
  next(at::globalContext().defaultGenerator(at::kCPU));
  if (device.is_cuda() && pos < bytes.size()) next(at::globalContext().defaultGenerator(device));
}

std::vector<float> to_host_floats(const at::Tensor& t) {
  const auto c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

void copy_into(const at::Tensor& dst, const std::vector<float>& src) {
  dst.copy_(at::from_blob(const_cast<float*>(src.data()), dst.sizes(), at::kFloat));
}

}  // namespace

std::string model_hash(const std::string& model_dir) {
  std::ostringstream os;
  os << std::hex << std::setw(16) << std::setfill('0') << stable_hash64(read_file(model_dir + "/config.json"));
  return os.str();
}

std::string model_weights_fingerprint(const std::string& model_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto c = st::Checkpoint::open_dir(model_dir);
  const auto fp = st::weights_fingerprint(c);
  log::info("model weights fingerprint ", fp, " (", c.names().size(), " tensors sampled in ", std::fixed,
            std::setprecision(3), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
            " s)");
  return fp;
}

std::string save_checkpoint(const Config& cfg, const TrainState& state, const RunIdentity& id,
                            const Qwen2Model& model, AdamW& opt, const at::Device& device) {
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
  for (auto& [name, t] : model.lora().named_parameters()) {
    NamedArray a;
    a.name = name;
    a.shape.assign(t.sizes().begin(), t.sizes().end());
    a.data = to_host_floats(t);
    s.adapters.push_back(std::move(a));
  }
  s.adam_m = to_host_floats(opt.exp_avg());
  s.adam_v = to_host_floats(opt.exp_avg_sq());
  s.adam_step = opt.steps();
  s.lr = state.last_lr;
  s.schedule = to_string(cfg.train.schedule);
  s.rng_states = rngs;
  s.has_best = state.has_best;
  s.best_eval_loss = state.has_best ? state.best_eval : 0.0;
  s.extra["dataset_fingerprint"] = id.data_fingerprint;
  s.extra["weights_fingerprint"] = id.weights;
  s.extra["comm_backend"] = id.comm_backend;
  s.extra["best_checkpoint"] = state.best_path;
  const auto path = checkpoint_path(cfg.output.dir, state.step);
  const auto t0 = std::chrono::steady_clock::now();
  write_checkpoint(path, s);
  rotate_checkpoints(cfg.output.dir, cfg.output.keep, state.best_path);
  log::info("checkpoint ", path, " (step ", state.step, ", ", std::fixed, std::setprecision(2),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s)");
  return path;
}

std::vector<ConfigChange> resume_differences(const CheckpointState& s, const Config& cfg, const RunIdentity& id) {
  auto out = math_config_changes(s.config_toml, cfg.to_toml());
  const auto wf = s.extra.find("weights_fingerprint");
  const std::string was_weights = wf == s.extra.end() ? "(none recorded)" : wf->second;
  if (s.model_hash != id.model_hash)
    out.push_back({"model", s.model_path + " (config.json hash " + s.model_hash + ")",
                   cfg.model.path + " (config.json hash " + id.model_hash + ")"});
  else if (was_weights != id.weights)
    out.push_back({"model", s.model_path + " (weights fingerprint " + was_weights + ")",
                   cfg.model.path + " (weights fingerprint " + id.weights + ")"});
  const auto fp = s.extra.find("dataset_fingerprint");
  const std::string was_fp = fp == s.extra.end() ? "" : fp->second;
  if (was_fp != id.data_fingerprint)
    out.push_back({"data", "fingerprint " + (was_fp.empty() ? std::string("(none recorded)") : was_fp),
                   "fingerprint " + id.data_fingerprint + " (" + cfg.data.path + ")"});
  if (s.global_batch != id.global_batch)
    out.push_back({"global batch", std::to_string(s.global_batch) + " rows", std::to_string(id.global_batch) +
                   " rows (micro_batch x grad_accum x ranks)"});
  return out;
}

namespace {

std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string k; std::getline(ss, k, ',');)
    if (!k.empty()) out.push_back(k);
  return out;
}

std::string describe(const std::vector<ConfigChange>& changes) {
  std::string out;
  for (const auto& c : changes)
    out += "\n  " + c.key + ": " + (c.was.empty() ? "(absent)" : c.was) + " -> " + (c.now.empty() ? "(absent)" : c.now);
  return out;
}

// Splits `all` into the differences --resume-anyway accepts and those that still refuse.
std::vector<ConfigChange> refusing(const std::vector<ConfigChange>& all, const std::string& anyway,
                                   std::vector<ConfigChange>* accepted) {
  const auto keys = split_keys(anyway);
  const bool every = anyway == "all";
  std::vector<ConfigChange> out;
  for (const auto& c : all) {
    const bool ok = c.key != "global batch" &&
                    (every || std::find(keys.begin(), keys.end(), c.key) != keys.end());
    (ok ? *accepted : out).push_back(c);
  }
  return out;
}

const char* kAnywayHint =
    "\nHINT: continue with these settings anyway: --resume-anyway (every key) or --resume-anyway KEY,KEY "
    "(recorded in metrics.h5); or go back to the checkpoint's settings; or start the new settings in a new "
    "output.dir";

}  // namespace

namespace {

// choose_checkpoint's search, on one rank.
ResumeChoice choose_here(const Config& cfg, const RunIdentity& id, const std::string& resume,
                         const std::string& anyway) {
  ResumeChoice choice;
  if (resume.empty()) return choice;
  if (resume != "auto") {
    choice.path = resume;
    choice.state = read_checkpoint(resume);
    const auto left = refusing(resume_differences(choice.state, cfg, id), anyway, &choice.overridden);
    if (!left.empty())
      throw UsageError("cannot resume from " + resume + ": it was written with other settings:" + describe(left) +
                       kAnywayHint);
    return choice;
  }
  const auto paths = checkpoints_newest_first(cfg.output.dir);
  std::vector<std::string> skipped;
  std::string first_foreign;
  std::vector<ConfigChange> first_left;
  for (const auto& path : paths) {
    CheckpointState s;
    try {
      s = read_checkpoint(path);
    } catch (const std::exception& e) {
      log::warn("resume auto: skipping ", path, ": ", e.what());
      skipped.push_back(path + " (damaged)");
      continue;
    }
    std::vector<ConfigChange> accepted;
    const auto left = refusing(resume_differences(s, cfg, id), anyway, &accepted);
    if (left.empty()) {
      if (!skipped.empty()) {
        std::string list;
        for (const auto& k : skipped) list += "\n  " + k;
        log::warn("resume auto: continuing from ", path, ", the newest intact checkpoint of this run; skipped:", list);
      }
      choice.path = path;
      choice.state = std::move(s);
      choice.overridden = std::move(accepted);
      return choice;
    }
    log::warn("resume auto: skipping ", path, ": written with other settings:", describe(left));
    skipped.push_back(path + " (other settings)");
    if (first_foreign.empty()) {
      first_foreign = path;
      first_left = left;
    }
  }
  if (!first_foreign.empty())
    throw UsageError("cannot resume in " + cfg.output.dir + ": no checkpoint matches this run's settings; the "
                     "newest intact one, " + first_foreign + ", differs in:" + describe(first_left) + kAnywayHint);
  if (!paths.empty())
    throw UsageError("cannot resume in " + cfg.output.dir + ": every checkpoint is damaged (" +
                     std::to_string(paths.size()) + " tried; warnings above)\nHINT: r1dist checkpoint verify " +
                     cfg.output.dir + " lists them; move them away to start again at step 0");
  log::info("resume auto: no checkpoint in ", cfg.output.dir, "; starting at step 0");
  return choice;
}

// Rank 0's text to every rank: its length, then its bytes.
std::string broadcast_text(std::string text) {
  int64_t n = int64_t(text.size());
  dist_broadcast(&n, sizeof n, 0, "MPI_Bcast of rank 0's resume decision");
  text.resize(size_t(n));
  if (n > 0) dist_broadcast(&text[0], n, 0, "MPI_Bcast of rank 0's resume decision");
  return text;
}

}  // namespace

ResumeChoice choose_checkpoint(const Config& cfg, const RunIdentity& id, const std::string& resume,
                               const std::string& anyway) {
  const auto& pg = dist_group();
  if (pg.world == 1 || resume.empty()) return choose_here(cfg, id, resume, anyway);
  // Rank 0 reads and checks every candidate; the others learn its verdict and read only the
  // chosen file (8 ranks do not read a run's checkpoints 8 times). A refusal reaches every
  // rank, so none waits for the others.
  ResumeChoice choice;
  std::string verdict;  // "ok:PATH" or "error:MESSAGE"
  bool usage = false;
  if (pg.rank == 0) {
    try {
      choice = choose_here(cfg, id, resume, anyway);
      verdict = "ok:" + choice.path;
    } catch (const UsageError& e) {
      verdict = std::string("error:") + e.what();
      usage = true;
    } catch (const std::exception& e) {
      verdict = std::string("error:") + e.what();
    }
  }
  verdict = broadcast_text(verdict);
  if (verdict.rfind("error:", 0) == 0) {
    const std::string why = verdict.substr(6);
    if (pg.rank == 0 && !usage) throw Error(why);
    throw UsageError(why);  // the other ranks: rank 0 prints it
  }
  if (pg.rank == 0) return choice;
  choice.path = verdict.substr(3);
  if (choice.path.empty()) return choice;
  choice.state = read_checkpoint(choice.path);
  const auto left = refusing(resume_differences(choice.state, cfg, id), anyway, &choice.overridden);
  if (!left.empty())
    throw Error("rank " + std::to_string(pg.rank) + " reads " + choice.path + " as written with other settings:" +
                describe(left) + " (rank 0 accepted it)");
  return choice;
}

TrainState load_checkpoint(const ResumeChoice& choice, const Config& cfg, const Qwen2Model& model, AdamW& opt,
                           const at::Device& device) {
  const auto& pg = dist_group();
  const auto& s = choice.state;
  const auto& path = choice.path;
  if (!choice.overridden.empty())
    log::warn("resume: continuing from ", path, " although its settings differ (--resume-anyway):",
              describe(choice.overridden));
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
  if (s.world_size == pg.world && int(s.rng_states.size()) == pg.world) {
    load_rng(s.rng_states[size_t(pg.rank)], device);
  } else {
    // A different world size: the ranks' streams cannot map one to one; reseed per rank.
    at::manual_seed(uint64_t(cfg.train.seed) + 1000003ull * uint64_t(pg.rank) + uint64_t(s.step));
    log::warn("resume: checkpoint written by ", s.world_size, " ranks, running on ", pg.world,
              "; RNG streams reseeded (only LoRA dropout uses them)");
  }
  log::info("resumed from ", path, " at step ", s.step, " (", s.rows_consumed, " rows consumed)");
  return state;
}

}  // namespace r1dist
