#include "r1dist/trainer.h"

#include <ATen/ATen.h>
#include <malloc.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <fstream>
#include <iomanip>
#include <limits>
#include <memory>
#include <sstream>

#include "r1dist/checkpoint.h"
#include "r1dist/comm.h"
#include "r1dist/data.h"
#include "r1dist/dist.h"
#include "r1dist/error.h"
#include "r1dist/eval.h"
#include "r1dist/hash.h"
#include "r1dist/log.h"
#include "r1dist/optim.h"
#include "r1dist/peft.h"
#include "r1dist/qwen2.h"
#include "r1dist/tokenizer.h"
#include "r1dist/torch_compat.h"

#if defined(R1DIST_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace r1dist {

FaultPlan FaultPlan::from_env() {
  FaultPlan f;
  const char* env = std::getenv("R1DIST_FAULT");
  if (!env || !*env) return f;
  std::stringstream ss(env);
  std::string part;
  bool first = true;
  while (std::getline(ss, part, ':')) {
    if (first) {
      if (part == "kill")
        f.kind = kill;
      else if (part == "kill_in_checkpoint")
        f.kind = kill_in_checkpoint;
      else if (part == "nan_loss")
        f.kind = nan_loss;
      else
        throw UsageError("R1DIST_FAULT: unknown fault '" + part + "'");
      first = false;
    } else if (part.rfind("rank=", 0) == 0) {
      f.rank = std::stoi(part.substr(5));
    } else if (part.rfind("step=", 0) == 0) {
      f.step = std::stoll(part.substr(5));
    } else {
      throw UsageError("R1DIST_FAULT: cannot parse '" + part + "'");
    }
  }
  return f;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), "cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string hex64(uint64_t h) {
  std::ostringstream os;
  os << std::hex << std::setw(16) << std::setfill('0') << h;
  return os.str();
}

// The model's identity for checkpoints: a hash of config.json (shapes and hyperparameters).
std::string model_hash(const std::string& dir) { return hex64(fnv1a(read_file(dir + "/config.json"))); }

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

double peak_memory_gb(const at::Device& device) {
#if defined(R1DIST_WITH_CUDA)
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return double(stats.allocated_bytes[0].peak) / 1e9;
  }
#endif
  (void)device;
  return 0.0;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  std::ostringstream os;
  if (t >= 3600) os << t / 3600 << "h";
  if (t >= 60) os << std::setw(t >= 3600 ? 2 : 1) << std::setfill('0') << (t / 60) % 60 << "m";
  os << std::setw(t >= 60 ? 2 : 1) << std::setfill('0') << t % 60 << "s";
  return os.str();
}

// Labels that the loss sees (positions 1..T-1 with a label), per example: the global
// token count of a step is known on every rank without communication.
int64_t loss_tokens(const Example& e) {
  int64_t n = 0;
  for (size_t i = 1; i < e.labels.size(); ++i) n += e.labels[i] != -100;
  return n;
}

at::Tensor int_tensor(const std::vector<int64_t>& v, int64_t b, int64_t t, const at::Device& d) {
  return at::from_blob(const_cast<int64_t*>(v.data()), {b, t}, at::kLong).to(d);
}

// Everything a training run holds between steps.
struct Run {
  const Config& cfg;
  const ProcessGroup& pg;
  at::Device device;
  Tokenizer tok;
  Dataset data;
  std::unique_ptr<Qwen2Model> model;
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<BatchPlan> plan;
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<MetricsWriter> metrics;  // rank 0
  std::vector<int64_t> example_loss_tokens;
  std::string model_id;
  int64_t global_batch = 0;
  int64_t step = 0;
  double last_lr = 0;
  bool has_best = false;
  double best_eval = 0;
  std::string best_path, last_path;
};

void write_ckpt(Run& run, const FaultPlan& fault) {
  // RNG states of every rank, gathered on rank 0 (the only writer).
  const auto rngs = dist_gather_strings(save_rng(run.device), 0);
  if (run.pg.rank != 0) return;
  CheckpointState s;
  s.step = run.step;
  s.rows_consumed = run.step * run.global_batch;
  s.global_batch = run.global_batch;
  s.world_size = run.pg.world;
  s.config_toml = run.cfg.to_toml();
  s.model_path = run.cfg.model.path;
  s.model_hash = run.model_id;
  s.version = R1DIST_VERSION;
  for (auto& [name, t] : run.model->lora_named_parameters()) {
    NamedArray a;
    a.name = name;
    const auto c = t.detach().to(at::kCPU, at::kFloat).contiguous();
    a.shape.assign(c.sizes().begin(), c.sizes().end());
    a.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    s.adapters.push_back(std::move(a));
  }
  const auto m = run.opt->exp_avg().to(at::kCPU).contiguous();
  const auto v = run.opt->exp_avg_sq().to(at::kCPU).contiguous();
  s.adam_m.assign(m.data_ptr<float>(), m.data_ptr<float>() + m.numel());
  s.adam_v.assign(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
  s.adam_step = run.opt->steps();
  s.lr = run.last_lr;
  s.schedule = run.cfg.train.schedule;
  s.rng_states = rngs;
  s.has_best = run.has_best;
  s.best_eval_loss = run.has_best ? run.best_eval : 0.0;
  s.extra["dataset_fingerprint"] = run.data.fingerprint;
  s.extra["comm_backend"] = run.comm->name();
  s.extra["best_checkpoint"] = run.best_path;
  const auto path = checkpoint_path(run.cfg.output.dir, run.step);
  if (fault.kind == FaultPlan::kill_in_checkpoint && fault.step == run.step)
    set_checkpoint_write_hook([](const char*) { std::raise(SIGKILL); });
  const auto t0 = std::chrono::steady_clock::now();
  write_checkpoint(path, s);
  run.last_path = path;
  rotate_checkpoints(run.cfg.output.dir, run.cfg.output.keep, run.best_path);
  log::info("checkpoint ", path, " (step ", run.step, ", ", std::fixed, std::setprecision(2),
            seconds_since(t0), " s)");
}

void resume_from(Run& run, const std::string& path) {
  const auto s = read_checkpoint(path);
  if (s.model_hash != run.model_id)
    throw UsageError("cannot resume from " + path + ": it was written for model " + s.model_path +
                     " (config hash " + s.model_hash + "), this run loads " + run.cfg.model.path +
                     " (config hash " + run.model_id + ")");
  if (s.global_batch != run.global_batch)
    throw UsageError("cannot resume from " + path + ": its global batch was " +
                     std::to_string(s.global_batch) + " rows, this run's is " +
                     std::to_string(run.global_batch) +
                     " (micro_batch x grad_accum x world size)\nHINT: set train.grad_accum so "
                     "that micro_batch x grad_accum x ranks = " + std::to_string(s.global_batch));
  auto params = run.model->lora_named_parameters();
  check(params.size() == s.adapters.size(),
        "cannot resume from " + path + ": it has " + std::to_string(s.adapters.size()) +
            " adapter tensors, the model has " + std::to_string(params.size()) + " (different lora settings?)");
  {
    at::NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) {
      auto& [name, t] = params[i];
      const auto& a = s.adapters[i];
      check(a.name == name, "cannot resume from " + path + ": adapter " + std::to_string(i) + " is " +
                                a.name + ", the model expects " + name);
      check(int64_t(a.data.size()) == t.numel(), "cannot resume from " + path + ": " + name + " has " +
                                                     std::to_string(a.data.size()) + " values, expected " +
                                                     std::to_string(t.numel()));
      t.copy_(at::from_blob(const_cast<float*>(a.data.data()), t.sizes(), at::kFloat));
    }
    check(int64_t(s.adam_m.size()) == run.opt->exp_avg().numel(), "cannot resume from " + path +
                                                                        ": optimizer state size differs");
    run.opt->exp_avg().copy_(at::from_blob(const_cast<float*>(s.adam_m.data()), {int64_t(s.adam_m.size())}, at::kFloat));
    run.opt->exp_avg_sq().copy_(at::from_blob(const_cast<float*>(s.adam_v.data()), {int64_t(s.adam_v.size())}, at::kFloat));
  }
  run.opt->set_steps(s.adam_step);
  run.step = s.step;
  run.last_lr = s.lr;
  run.has_best = s.has_best;
  run.best_eval = s.best_eval_loss;
  if (auto it = s.extra.find("best_checkpoint"); it != s.extra.end()) run.best_path = it->second;
  if (s.world_size == run.pg.world && int(s.rng_states.size()) == run.pg.world) {
    load_rng(s.rng_states[size_t(run.pg.rank)], run.device);
  } else {
    // A different world size: the ranks' streams cannot map one to one; reseed per rank.
    at::manual_seed(uint64_t(run.cfg.train.seed) + 1000003ull * uint64_t(run.pg.rank) + uint64_t(s.step));
    log::warn("resume: checkpoint written by ", s.world_size, " ranks, running on ", run.pg.world,
              "; RNG streams reseeded (only LoRA dropout uses them)");
  }
  log::info("resumed from ", path, " at step ", s.step, " (", s.rows_consumed, " rows consumed)");
}

// output.dir/run.json: what this run trained on and where it came from (rewritten on resume).
void write_run_metadata(const Run& run, const TrainOptions& opt) {
  nlohmann::json j;
  j["r1dist_version"] = R1DIST_VERSION;
  j["config_path"] = opt.config_path;
  j["model_path"] = run.cfg.model.path;
  j["model_hash"] = run.model_id;
  j["world_size"] = run.pg.world;
  j["global_batch"] = run.global_batch;
  j["data_path"] = run.cfg.data.path;
  j["dataset_fingerprint"] = run.data.fingerprint;
  j["rows_in_file"] = run.data.load.rows_in_file;
  j["rows_skipped"] = run.data.load.skipped;
  j["rows_truncated"] = run.data.truncated;
  j["rows_dropped"] = run.data.dropped;
  std::vector<int64_t> train_rows, eval_rows;
  for (const auto& e : run.data.train) train_rows.push_back(e.row);
  for (const auto& e : run.data.eval) eval_rows.push_back(e.row);
  j["train_row_ids"] = train_rows;
  j["eval_row_ids"] = eval_rows;
  const std::string path = run.cfg.output.dir + "/run.json";
  std::ofstream f(path + ".tmp", std::ios::trunc);
  f << j.dump(1) << "\n";
  f.close();
  check(static_cast<bool>(f), "cannot write " + path + ".tmp");
  check(std::rename((path + ".tmp").c_str(), path.c_str()) == 0, "cannot rename " + path + ".tmp");
}

// Held-out loss and KL drift, sharded over ranks and summed.
EvalRecord evaluate(Run& run) {
  EvalRecord r;
  r.step = run.step;
  std::vector<const Example*> mine, kl_mine;
  const auto& ev = run.data.eval;
  const int64_t kl_rows = std::min<int64_t>(run.cfg.eval.kl_rows, int64_t(ev.size()));
  for (size_t i = 0; i < ev.size(); ++i) {
    if (int(i % size_t(run.pg.world)) != run.pg.rank) continue;
    mine.push_back(&ev[i]);
    if (int64_t(i) < kl_rows) kl_mine.push_back(&ev[i]);
  }
  const auto loss = eval_loss(*run.model, mine, run.cfg.train.micro_batch, run.tok.eos_id().value_or(0));
  const auto kl = kl_drift(*run.model, kl_mine);
  auto sums = at::tensor(std::vector<double>{loss.sum, double(loss.count), kl.sum, double(kl.count)},
                         at::kDouble)
                  .to(run.device);
  run.comm->allreduce_sum(sums);
  sums = sums.to(at::kCPU);
  const auto* p = sums.data_ptr<double>();
  r.eval_loss = p[1] > 0 ? p[0] / p[1] : 0.0;
  r.eval_tokens = int64_t(p[1]);
  r.kl = p[3] > 0 ? p[2] / p[3] : 0.0;
  return r;
}

}  // namespace

TrainResult train(const Config& cfg, const TrainOptions& opt) {
  const auto& pg = dist_group();
  const FaultPlan fault = FaultPlan::from_env();
  const auto t_start = std::chrono::steady_clock::now();
  at::Device device = parse_device(cfg.model.device, pg.local_rank);
#if defined(R1DIST_WITH_CUDA)
  if (device.is_cuda()) c10::cuda::set_device(device.index());
#endif
  if (device.is_cpu()) {
    // Keep freed memory in the process: the vocabulary-sized logits (hundreds of MB per
    // micro-batch) otherwise go back to the kernel and are page-faulted in again every time,
    // which made CPU steps about 8x slower on the development VM.
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  }
  // CPU threads: the node's cores shared among its ranks (oversubscribed OpenMP threads spin
  // and slow every rank down many times over). OMP_NUM_THREADS, when set, wins.
  if (!std::getenv("OMP_NUM_THREADS")) {
    const int hw = std::max(1u, std::thread::hardware_concurrency());
    at::set_num_threads(std::max(1, hw / std::max(1, pg.local_world)));
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(cfg.output.dir + "/checkpoints", ec);
    if (ec) throw Error("cannot create " + cfg.output.dir + "/checkpoints: " + ec.message());
  }
  if (cfg.data.path.empty()) throw UsageError("data.path is required to train (" + opt.config_path + ")");

  Run run{cfg, pg, device, Tokenizer::load(cfg.model.path), {}, nullptr, nullptr, nullptr, nullptr, nullptr,
          {}, {}, 0, 0, 0, false, 0, {}, {}};
  run.global_batch = cfg.train.micro_batch * cfg.train.grad_accum * pg.world;

  // Data: rank 0 tokenizes and fills the cache; the others then read it.
  const auto cache_dir = cfg.output.dir + "/cache";
  if (pg.rank == 0) run.data = build_dataset(cfg.data, run.tok, uint64_t(cfg.train.seed), cache_dir);
  dist_barrier();
  if (pg.rank != 0) run.data = build_dataset(cfg.data, run.tok, uint64_t(cfg.train.seed), cache_dir);
  check(!run.data.train.empty(), "no training rows left after selection (" + cfg.data.path + ")");
  int64_t train_tokens = 0;
  for (const auto& e : run.data.train) {
    run.example_loss_tokens.push_back(loss_tokens(e));
    train_tokens += int64_t(e.ids.size());
  }
  log::info("data ", cfg.data.path, ": ", run.data.load.rows_in_file, " rows in the file, ",
            run.data.load.skipped, " skipped, ", run.data.train.size(), " train / ", run.data.eval.size(),
            " eval rows, ", train_tokens, " train tokens, ", run.data.truncated, " truncated, ",
            run.data.dropped, " dropped (max_seq_len ", cfg.data.max_seq_len, ")",
            run.data.from_cache ? ", from cache" : "");
  std::vector<int64_t> lengths;
  for (const auto& e : run.data.train) lengths.push_back(int64_t(e.ids.size()));
  run.plan = std::make_unique<BatchPlan>(lengths, uint64_t(cfg.train.seed), run.global_batch,
                                         cfg.data.group_by_length);

  // Model: frozen (NF4) base + LoRA in one flat fp32 buffer, identical on every rank.
  run.model_id = model_hash(cfg.model.path);
  LoadOptions load;
  load.quant = cfg.quant.mode;
  load.double_quant = cfg.quant.double_quant;
  run.model = std::make_unique<Qwen2Model>(
      Qwen2Model::load(cfg.model.path, parse_compute_dtype(cfg.model.dtype), device, load));
  run.model->attach_lora(LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora},
                         cfg.lora.targets, uint64_t(cfg.train.seed));
  at::manual_seed(uint64_t(cfg.train.seed) + 1000003ull * uint64_t(pg.rank));
  auto flat = run.model->lora_flat();
  auto grad = run.model->lora_flat_grad();
  run.opt = std::make_unique<AdamW>(
      flat, AdamWConfig{cfg.train.adam_beta1, cfg.train.adam_beta2, cfg.train.adam_eps, cfg.train.weight_decay});
  run.comm = make_communicator(cfg.dist.backend, device, cfg.dist.timeout_s);
  log::info("model ", cfg.model.path, " on ", device.str(), " (", cfg.model.dtype, ", base ", cfg.quant.mode,
            "), ", flat.numel(), " LoRA parameters; ", pg.world, " rank(s), gradients over ", run.comm->name(),
            "; global batch ", run.global_batch, " rows = ", cfg.train.micro_batch, " x ",
            cfg.train.grad_accum, " x ", pg.world);

  if (cfg.train.steps == 0) {
    // Evaluation only (the base-model versions v2-v4): zero-initialised B makes the adapted
    // model the base model, so the same code measures it.
    check(!run.data.eval.empty(), "train.steps = 0 evaluates the held-out split, but it is empty\n"
                                  "HINT: set data.eval_rows or data.eval_fraction");
    const auto ev = evaluate(run);
    log::info("evaluation only (train.steps = 0): held-out loss ", ev.eval_loss, " over ", ev.eval_tokens,
              " tokens");
    if (pg.rank == 0) {
      MetricsWriter m(cfg.output.dir + "/metrics.h5", false, 0);
      m.set_attr("eval_rows", int64_t(run.data.eval.size()));
      m.append(ev);
    }
    dist_barrier();
    return TrainResult{};
  }

  // Resume. A fresh run never mixes its checkpoints with an earlier run's.
  if (opt.resume.empty() && pg.rank == 0) {
    const auto existing = find_latest_checkpoint(cfg.output.dir);
    if (!existing.empty())
      throw UsageError("output.dir " + cfg.output.dir + " already holds checkpoints of a run (" + existing +
                       ")\nHINT: continue it with --resume auto, or set output.dir to a new directory");
  }
  if (!opt.resume.empty()) {
    std::string path = opt.resume;
    if (path == "auto") {
      path = find_latest_checkpoint(cfg.output.dir);
      if (path.empty()) log::info("resume auto: no checkpoint in ", cfg.output.dir, "; starting at step 0");
    }
    if (!path.empty()) resume_from(run, path);
  }
  if (run.step >= cfg.train.steps) {
    log::info("nothing to do: the checkpoint is at step ", run.step, " of ", cfg.train.steps);
    TrainResult res;
    res.steps_done = run.step;
    return res;
  }

  if (pg.rank == 0) {
    run.metrics = std::make_unique<MetricsWriter>(cfg.output.dir + "/metrics.h5", run.step > 0, run.step);
    run.metrics->set_attr("rows_in_file", run.data.load.rows_in_file);
    run.metrics->set_attr("rows_skipped", run.data.load.skipped);
    run.metrics->set_attr("rows_truncated", run.data.truncated);
    run.metrics->set_attr("rows_dropped", run.data.dropped);
    run.metrics->set_attr("train_rows", int64_t(run.data.train.size()));
    run.metrics->set_attr("eval_rows", int64_t(run.data.eval.size()));
    run.metrics->set_attr("world_size", int64_t(pg.world));
    write_run_metadata(run, opt);
  }

  // The base model's held-out loss (and KL 0) as the reference of a fresh run.
  if (run.step == 0 && cfg.eval.every_steps > 0 && !run.data.eval.empty()) {
    const auto ev = evaluate(run);
    log::info("eval at step 0 (the base model): loss ", ev.eval_loss, " over ", ev.eval_tokens, " tokens");
    if (run.metrics) run.metrics->append(ev);
  }

  const bool ckpt_layers = cfg.train.checkpointing == "layer";
  const int32_t pad = run.tok.eos_id().value_or(0);
  auto stats = at::zeros({2}, at::TensorOptions().dtype(at::kDouble).device(device));
  TrainResult res;
  double ema_step_s = 0;
  const int64_t first_step = run.step;
  grad.zero_();
  while (run.step < cfg.train.steps) {
    const auto t0 = std::chrono::steady_clock::now();
    run.comm->take_seconds();  // count only this step's collectives
    const int64_t k = run.step;
    const double lr = lr_at(cfg.train.schedule, cfg.train.lr, k, cfg.train.warmup_steps, cfg.train.steps);
    int64_t n_global = 0;
    for (int64_t i : run.plan->step_rows(k)) n_global += run.example_loss_tokens[size_t(i)];
    check(n_global > 0, "step " + std::to_string(k + 1) + " has no loss tokens (all labels masked)");
    double local_loss = 0;
    for (const auto& mb_idx : run.plan->rank_micro_batches(k, pg.rank, pg.world, cfg.train.micro_batch,
                                                           cfg.train.grad_accum)) {
      std::vector<const Example*> rows;
      for (int64_t i : mb_idx) rows.push_back(&run.data.train[size_t(i)]);
      const auto c = collate(rows, pad);
      const auto ids = int_tensor(c.ids, c.batch, c.seq, device);
      const auto labels = int_tensor(c.labels, c.batch, c.seq, device);
      const auto logits = run.model->lm_head(run.model->hidden_states_train(ids, ckpt_layers));
      auto l = causal_lm_loss_sum(logits, labels);
      if (fault.kind == FaultPlan::nan_loss && fault.rank == pg.rank && fault.step == k + 1)
        l.sum = l.sum * std::numeric_limits<double>::quiet_NaN();
      (l.sum / double(n_global)).backward();
      local_loss += l.sum.item<double>();
    }
    stats.fill_(0);
    stats[0] = local_loss;
    run.comm->allreduce_sum(grad);
    run.comm->allreduce_sum(stats);
    const double comm_s = run.comm->take_seconds();
    const double loss = stats[0].item<double>() / double(n_global);
    const double norm = clip_grad_norm(grad, cfg.train.max_grad_norm);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      const std::string last = pg.rank == 0 ? find_latest_checkpoint(cfg.output.dir) : "";
      throw Error("non-finite " + std::string(std::isfinite(loss) ? "gradient" : "loss") + " at step " +
                  std::to_string(k + 1) + " (loss " + std::to_string(loss) + ", grad norm " +
                  std::to_string(norm) + "); stopping without a checkpoint of this step" +
                  (last.empty() ? std::string() : "; the last good checkpoint is " + last) +
                  "\nHINT: lower train.lr, or check the data rows of this step");
    }
    {
      at::NoGradGuard ng;
      run.opt->step(flat, grad, lr);
    }
    grad.zero_();
    run.step = k + 1;
    run.last_lr = lr;
    compat::synchronize(device);
    const double dt = seconds_since(t0);
    ema_step_s = run.step == first_step + 1 ? dt : 0.8 * ema_step_s + 0.2 * dt;

    StepRecord rec;
    rec.step = run.step;
    rec.loss = loss;
    rec.lr = lr;
    rec.grad_norm = norm;
    rec.tokens = n_global;
    rec.step_time_s = dt;
    rec.tokens_per_s = double(n_global) / dt;
    rec.mem_gb = peak_memory_gb(device);
    if (run.metrics) run.metrics->append(rec);
    res.final_loss = loss;
    {
      std::ostringstream os;
      os << "step " << run.step << "/" << cfg.train.steps << "  loss " << std::fixed << std::setprecision(4)
         << loss << "  lr " << std::scientific << std::setprecision(2) << lr << "  |g| " << std::fixed
         << std::setprecision(3) << norm << "  " << std::setprecision(0) << rec.tokens_per_s << " tok/s  "
         << std::setprecision(1) << 100.0 * comm_s / dt << "% comm  ETA "
         << fmt_duration(ema_step_s * double(cfg.train.steps - run.step));
      log::progress(os.str());
    }
    if (fault.kind == FaultPlan::kill && fault.rank == pg.rank && fault.step == run.step) {
      log::flush();
      std::raise(SIGKILL);
    }

    const bool stop_now = opt.stop_after > 0 && run.step == opt.stop_after && run.step < cfg.train.steps;
    const bool last = run.step == cfg.train.steps;
    bool save = last || stop_now || (cfg.output.save_every > 0 && run.step % cfg.output.save_every == 0);
    const bool eval_now = !run.data.eval.empty() &&
                          (last || (cfg.eval.every_steps > 0 && run.step % cfg.eval.every_steps == 0));
    if (eval_now) {
      const auto ev = evaluate(run);
      log::progress_done();
      log::info("eval at step ", run.step, ": loss ", ev.eval_loss, " over ", ev.eval_tokens,
                " tokens, KL(base || tuned) ", ev.kl, " per token");
      if (run.metrics) run.metrics->append(ev);
      if (!run.has_best || ev.eval_loss < run.best_eval) {
        run.has_best = true;
        run.best_eval = ev.eval_loss;
        save = true;
        if (pg.rank == 0) run.best_path = checkpoint_path(cfg.output.dir, run.step);
      }
      if (cfg.eval.max_kl > 0 && ev.kl > cfg.eval.max_kl) {
        log::warn("drift KL ", ev.kl, " exceeds eval.max_kl = ", cfg.eval.max_kl, " at step ", run.step,
                  "; stopping early (the best checkpoint by eval loss is kept)");
        res.stopped_on_drift = true;
        save = true;
      }
    }
    if (save) {
      log::progress_done();
      write_ckpt(run, fault);
    }
    if (res.stopped_on_drift) break;
    if (stop_now) {
      log::info("--stop-after ", opt.stop_after, ": stopping at step ", run.step, " of ", cfg.train.steps,
                "; continue with --resume auto");
      break;
    }
  }
  log::progress_done();
  res.steps_done = run.step;
  res.last_checkpoint = run.last_path;
  res.best_checkpoint = run.best_path;
  if (pg.rank == 0) {
    PeftAdapterConfig pc;
    pc.spec = LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora};
    pc.targets = cfg.lora.targets;
    pc.base_model = cfg.model.path;
    save_peft_adapter(*run.model, cfg.output.dir + "/adapter", pc);
    log::info("done: ", run.step, " steps in ", fmt_duration(seconds_since(t_start)), ", final loss ",
              res.final_loss, "; PEFT adapter in ", cfg.output.dir, "/adapter; metrics in ", cfg.output.dir,
              "/metrics.h5");
  }
  dist_barrier();
  return res;
}

}  // namespace r1dist
