// r1dist bench: measurements that are not tests. `bench nf4`: bytes per weight of the NF4
// projections of a preset, and dequantisation bandwidth against a device-to-device copy in
// the same run. `bench data`: the data pipeline (load, select, template, tokenize) on a
// data file replicated K times, rows/s and tokens/s per tokenizer thread count. With CUDA,
// `bench nf4` also times the few-row product of decoding (nf4::gemv_cuda) on one layer's
// projections at every plan. `bench checkpoint`: write and read speed of an HDF5 checkpoint
// holding a preset's LoRA adapters (all seven projections) plus the two AdamW moments. `bench generate`: greedy
// decoding tokens/s of a model directory at the given batch sizes, a fixed-length random
// prompt and a forced number of new tokens (no EOS), the setting of
// tools/bench/hf_generate.py, which measures HF transformers the same way. `bench loss`: the
// chunked lm_head + cross-entropy against the full logits. `bench train`: training steps at a
// preset's shape on random weights and random tokens (no files): tokens/s, MFU (model FLOPs
// utilisation, docs/PERFORMANCE.md),
// peak memory and the time split of a step (forward, lm_head + loss, backward, all-reduce,
// optimizer). Under mpirun / srun it runs on every rank, each on its own random tokens, and
// all-reduces the LoRA gradient buffer every step as training does (the same buffer and
// Communicator); rank 0 prints the job's figures, the efficiency against a one-rank
// baseline and the projection to more GPUs (report/scaling.h). `bench allreduce`
// (bench_scaling.cpp): that collective alone, timed as nccl-tests does.
// `bench balance` (bench_balance.cpp): how evenly a config's steps spread over 1..N ranks.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <random>
#include <unistd.h>

#include "r1dist/eval/generate.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/formats/qwen2_config.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/loader.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/comm/communicator.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/report/scaling.h"
#include "r1dist/log/log.h"
#include "r1dist/quant/nf4.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tensor/offload.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/tensor/device_timer.h"
#include "r1dist/tensor/step_profiler.h"
#include "r1dist/train/build_run.h"
#include "r1dist/train/optim.h"

namespace r1dist {

namespace {

int bench_nf4(const Args& a) {
  const auto cfg = qwen2_preset(a.str("preset"));
  const auto dev = parse_device(a.str("device"));
  int64_t layers = a.i64("layers");
  if (layers <= 0 || layers > cfg.num_hidden_layers) layers = cfg.num_hidden_layers;

  // 1. Memory: quantise every projection of `layers` layers from random bf16 weights, keep
  // them all resident, and count the bytes they hold.
  std::vector<nf4::NF4Tensor> kept;
  std::vector<std::string> names;
  int64_t weights = 0, bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& w : qwen2_weight_table(cfg)) {
    if (w.role != WeightRole::projection || w.layer >= layers) continue;
    auto dense = at::randn(w.shape, at::TensorOptions().device(dev).dtype(at::kBFloat16)) * 0.02;
    kept.push_back(nf4::quantize(dense, true, w.name));
    names.push_back(w.name);
    weights += dense.numel();
    bytes += kept.back().storage_bytes();
  }
  compat::synchronize(dev);
  const double qs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("nf4 memory: %s, %lld of %lld layers, %.3f G projection weights -> %.3f GB NF4: %.4f bytes/weight "
              "(bf16 would be 2.0; target <= 0.52); quantised in %.1f s on %s\n",
              a.str("preset").c_str(), (long long)layers, (long long)cfg.num_hidden_layers,
              weights / 1e9, bytes / 1e9, double(bytes) / double(weights), qs, dev.str().c_str());

  // 2. Bandwidth: dequantise the largest projections of one layer to bf16 and compare with a
  // device-to-device copy moving the same number of bytes (read + write).
  std::vector<const nf4::NF4Tensor*> big;
  for (size_t i = 0; i < 7 && i < kept.size(); ++i) big.push_back(&kept[i]);
  int64_t moved = 0;
  for (auto* q : big) moved += q->storage_bytes() + q->numel * 2;
  const int reps = dev.is_cuda() ? 50 : 3;
  const double t_deq = time_median(dev, 3, reps, [&] {
    for (auto* q : big) nf4::dequantize(*q, at::kBFloat16);
  });
  auto src = at::empty({moved / 2}, at::TensorOptions().device(dev).dtype(at::kByte)).fill_(1);
  auto dst = at::empty_like(src);
  const double t_copy = time_median(dev, 3, reps, [&] { dst.copy_(src); });
  const double bw_deq = moved / t_deq / 1e9, bw_copy = double(src.numel()) * 2 / t_copy / 1e9;
  std::printf("nf4 dequant bandwidth: %.1f GB/s (%.3f ms for %.1f MB read+written, one layer of %s); "
              "device copy %.1f GB/s; ratio %.2f (target >= 0.80)\n",
              bw_deq, t_deq * 1e3, moved / 1e6, a.str("preset").c_str(), bw_copy, bw_deq / bw_copy);
#ifdef R1DIST_WITH_CUDA
  // 3. The few-row product of decoding (nf4::gemv_cuda) on each projection of one layer, NF4
  // and bf16, at 1, 4 and 16 rows of x, against the path it replaces (NF4: dequantise + cuBLAS;
  // bf16: cuBLAS), in weight bytes read per second; the plan decoding uses against every other
  // plan of the same kernel (tensor cores from two rows: "TILESxWARPSxCHUNKS", NF4 "TILESxWARPS";
  // the CUDA-core kernel: "FEATURESxSPLITS").
  if (dev.is_cuda() && nf4::gemv_enabled()) {
    for (size_t i = 0; i < big.size(); ++i) {
      const auto& q = *big[i];
      const int64_t N = q.shape[0], K = q.shape[1];
      const auto dense = nf4::dequantize(q, at::kBFloat16);
      for (const bool is_nf4 : {true, false}) {
        const double wbytes = is_nf4 ? double(q.storage_bytes()) : double(N * K * 2);
        for (const int64_t rows : {int64_t(1), nf4::kGemvMaxRows, nf4::kMmaMaxRows}) {
          const auto x = at::randn({rows, K}, at::TensorOptions().device(dev).dtype(at::kBFloat16));
          const nf4::NF4Tensor* qp = is_nf4 ? &q : nullptr;
          if (!nf4::gemv_applies(x, qp, dense, {})) continue;  // decoding uses cuBLAS there
          // Every plan of the kernel these rows go to once (on tensor cores kMmaPlans, on the
          // CUDA-core kernel 1 or 4 features x 1-8 splits); the picked one is among them.
          const bool mma = rows >= 2 && nf4::mma_enabled();
          std::string plan_name;
          std::vector<std::pair<std::string, std::function<void()>>> plans;
          if (mma) {
            plan_name = nf4::to_string(nf4::mma_plan_for(x, {nf4::GemvPart{qp, dense, {}}}));
            for (const auto& mp : nf4::kMmaPlans)
              plans.emplace_back(nf4::to_string(mp), [&, mp] { nf4::gemv_cuda(x, qp, dense, {}, {}, mp); });
          } else {
            const auto plan = nf4::gemv_plan_for(x, qp, dense);
            plan_name = std::to_string(plan.rows_per_warp) + "x" + std::to_string(plan.splits);
            for (const int r : {1, 4})
              for (const int sp : {1, 2, 4, 8})
                plans.emplace_back(std::to_string(r) + "x" + std::to_string(sp),
                                   [&, r, sp] { nf4::gemv_cuda(x, qp, dense, {}, {r, sp}); });
          }
          std::string best, every;
          double t_best = 1e30, t_plan = 0;
          for (const auto& [name, run] : plans) {
            const double t = time_median(dev, 3, reps, run);
            if (name == plan_name) t_plan = t;
            char us[64];
            std::snprintf(us, sizeof us, "%s\"%s\": %.2f", every.empty() ? "" : ", ", name.c_str(), t * 1e6);
            every += us;
            if (t < t_best) t_best = t, best = name;
          }
          const double t_base = time_median(dev, 3, reps, [&] {
            at::linear(x, is_nf4 ? nf4::dequantize(q, at::kBFloat16) : dense);
          });
          std::printf("{\"bench\": \"gemv\", \"preset\": \"%s\", \"weight\": \"%s\", \"n\": %lld, \"k\": %lld, "
                      "\"format\": \"%s\", \"rows\": %lld, \"plan\": \"%s\", \"us\": %.2f, \"gb_per_s\": %.1f, "
                      "\"best_plan\": \"%s\", \"best_us\": %.2f, \"baseline\": \"%s\", \"baseline_us\": %.2f, "
                      "\"speedup\": %.2f, \"us_per_plan\": {%s}}\n",
                      a.str("preset").c_str(), names[i].c_str(), (long long)N, (long long)K, is_nf4 ? "nf4" : "bf16",
                      (long long)rows, plan_name.c_str(), t_plan * 1e6, wbytes / t_plan / 1e9,
                      best.c_str(), t_best * 1e6, is_nf4 ? "dequantize + cuBLAS" : "cuBLAS", t_base * 1e6,
                      t_base / t_plan, every.c_str());
          std::fflush(stdout);
        }
      }
    }
  }
#endif
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int bench_data(const Args& a) {
  if (!a.has("data") || !a.has("tokenizer"))
    throw UsageError("bench data: --data FILE and --tokenizer DIR are required");
  const auto src = a.str("data");
  const int64_t replicate = a.i64("replicate");
  if (replicate < 1) throw UsageError("bench data: --replicate must be >= 1");
  std::vector<int> threads;
  {
    std::stringstream ss(a.str("threads"));
    for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::stoi(t));
  }
  // The source rows (JSON array or JSONL), written back as one JSON array of K copies.
  std::stringstream whole(read_file(src));
  std::vector<Json> rows;
  if (src.size() > 6 && src.compare(src.size() - 6, 6, ".jsonl") == 0) {
    int n = 0;
    for (std::string line; std::getline(whole, line); ++n)
      if (!line.empty()) rows.push_back(parse_json(line, src + ":" + std::to_string(n + 1)));
  } else {
    const Json all = parse_json(whole.str(), src);
    for (const auto& row : JsonView(all, src).elements()) rows.push_back(row.json());
  }
  char tmpl[] = "/tmp/r1dist_bench_data_XXXXXX";
  if (!mkdtemp(tmpl)) throw Error("bench data: mkdtemp failed");
  const std::string dir = tmpl, file = dir + "/replicated.json";
  {
    AtomicFile out(file);
    out.write("[\n");
    for (int64_t k = 0; k < replicate; ++k)
      for (size_t i = 0; i < rows.size(); ++i)
        out.write(rows[i].dump() + (k + 1 == replicate && i + 1 == rows.size() ? "\n" : ",\n"));
    out.write("]\n");
    out.commit();
  }
  const double mb = double(read_file(file).size()) / 1e6;
  std::printf("data: %s x %lld = %lld rows, %.1f MB (%s)\n", src.c_str(), (long long)replicate,
              (long long)(rows.size() * replicate), mb, file.c_str());

  DataConfig cfg;
  cfg.path = file;
  cfg.max_seq_len = 8192;  // the seed experiment's length
  for (int t : threads) {
    cfg.threads = t;
    // A fresh tokenizer per run: its pre-token cache must not carry over between runs.
    const Tokenizer tok = Tokenizer::load(a.str("tokenizer"));
    auto t0 = std::chrono::steady_clock::now();
    const auto loaded = load_rows(cfg);
    const double t_load = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    const Dataset d = build_dataset(cfg, tok, 3407);  // no cache: reads, parses and tokenizes again
    const double t_all = seconds_since(t0);
    int64_t tokens = 0;
    for (const auto& x : d.train) tokens += static_cast<int64_t>(x.ids.size());
    const double n = double(d.train.size() + d.eval.size());
    std::printf("data threads=%d: load_rows %.3f s (%.0f rows/s, %.1f MB/s); build_dataset %.3f s: %.0f rows/s, "
                "%.0f tokens/s (%lld tokens, %lld truncated)\n",
                t, t_load, double(loaded.size()) / t_load, mb / t_load, t_all, n / t_all, double(tokens) / t_all,
                (long long)tokens, (long long)d.truncated);
  }
  remove_tree(dir);
  return 0;
}

int bench_checkpoint(const Args& a) {
  const auto cfg = qwen2_preset(a.str("preset"));
  const int64_t rank = a.i64("rank");
  const int64_t h = cfg.hidden_size, q = cfg.q_dim(), kv = cfg.kv_dim(), ffn = cfg.intermediate_size;
  const std::pair<const char*, std::pair<int64_t, int64_t>> projs[] = {  // name, (in, out)
      {"self_attn.q_proj", {h, q}},  {"self_attn.k_proj", {h, kv}}, {"self_attn.v_proj", {h, kv}},
      {"self_attn.o_proj", {q, h}},  {"mlp.gate_proj", {h, ffn}},   {"mlp.up_proj", {h, ffn}},
      {"mlp.down_proj", {ffn, h}}};
  CheckpointState s;
  s.world_size = 1;
  s.rng_states = {std::string(5056, 'r')};
  std::mt19937 gen(0);
  std::uniform_real_distribution<float> u(-1, 1);
  int64_t total = 0;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l)
    for (const auto& [name, io] : projs) {
      const std::string base = "base_model.model.model.layers." + std::to_string(l) + "." + name;
      for (auto [suffix, shape] : {std::pair{".lora_A.weight", std::vector<int64_t>{rank, io.first}},
                                   std::pair{".lora_B.weight", std::vector<int64_t>{io.second, rank}}}) {
        NamedArray a{base + suffix, shape, std::vector<float>(size_t(shape[0] * shape[1]))};
        for (auto& x : a.data) x = u(gen);
        total += int64_t(a.data.size());
        s.adapters.push_back(std::move(a));
      }
    }
  s.adam_m.assign(size_t(total), 0.25f);
  s.adam_v.assign(size_t(total), 0.5f);
  const std::string path = a.str("dir") + "/r1dist_bench_ckpt_" + std::to_string(::getpid()) + ".h5";
  const double mb = 3.0 * double(total) * 4 / 1e6;
  auto secs = [](auto t0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    write_checkpoint(path, s);
    const double tw = secs(t0);
    t0 = std::chrono::steady_clock::now();
    const auto back = read_checkpoint(path);
    const double tr = secs(t0);
    check(back.adam_v.size() == size_t(total), "bench checkpoint: read back a different size");
    std::printf("checkpoint %s r=%lld: %lld adapter values in %zu tensors + 2 optimizer moments = %.1f MB; "
                "write %.3f s (%.0f MB/s, fsync included), read %.3f s (%.0f MB/s)\n",
                a.str("preset").c_str(), (long long)rank, (long long)total, s.adapters.size(), mb, tw, mb / tw, tr,
                mb / tr);
  }
  ::unlink(path.c_str());
  return 0;
}

}  // namespace

// The bench flags that are config keys, read by those keys' own parsers (config.h
// set_config_value): --dtype (model.dtype), --quant (quant.mode, default `quant_default`)
// and --checkpointing (train.checkpointing) where the command has it.
Config flag_keys(const Args& a, const char* quant_default, bool checkpointing = false) {
  Config c;
  set_config_value(c, "model.dtype", a.str("dtype"), "--dtype");
  set_config_value(c, "quant.mode", a.has("quant") ? a.str("quant") : quant_default, "--quant");
  if (checkpointing) set_config_value(c, "train.checkpointing", a.str("checkpointing"), "--checkpointing");
  return c;
}

int bench_generate(const Args& a) {
  const auto dev = parse_device(a.str("device"));
  select_device(dev);
  const Config keys = flag_keys(a, "none");
  const auto dtype = to_scalar_type(keys.model.dtype);
  const auto model_dir = a.required("model");
  LoadOptions lo;
  lo.quant = keys.quant.mode;
  const std::string quant = to_string(keys.quant.mode);
  const auto t_load = std::chrono::steady_clock::now();
  auto model = Qwen2Model::load(model_dir, dtype, dev, lo);
  compat::synchronize(dev);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  const int64_t prompt_len = a.i64("prompt-len"), new_tokens = a.i64("new-tokens");
  std::mt19937_64 rng(7);
  const int64_t vocab = model.config().vocab_size;
  std::vector<int64_t> batches;
  {
    std::stringstream ss(a.str("batch"));
    std::string item;
    while (std::getline(ss, item, ',')) batches.push_back(std::stoll(item));
  }
  log::info("bench generate: ", model_dir, " (", a.str("dtype"), ", ", quant, ") loaded in ", load_s,
            " s; prompt ", prompt_len, " tokens, ", new_tokens, " new tokens forced, greedy");
  for (const int64_t b : batches) {
    std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(b));
    for (auto& p : prompts)
      for (int64_t i = 0; i < prompt_len; ++i) p.push_back(int64_t(rng() % uint64_t(std::min<int64_t>(vocab, 150000))));
    GenerateOptions opt;
    opt.sampling.greedy = true;
    opt.max_new_tokens = new_tokens;
    opt.cuda_graphs = a.str("graphs") != "off";
    GenerateOptions warm = opt;
    warm.max_new_tokens = 8;
    generate(model, prompts, warm);
    const double s = time_median(dev, 0, int(a.i64("reps")), [&] { generate(model, prompts, opt); });
    const double tps = double(b * new_tokens) / s;
    std::printf("{\"impl\": \"r1dist\", \"model\": \"%s\", \"quant\": \"%s\", \"batch\": %lld, \"prompt_len\": %lld, "
                "\"new_tokens\": %lld, \"graphs\": \"%s\", \"gemv\": \"%s\", \"gemv_mma\": \"%s\", "
                "\"decode_attention\": \"%s\", \"seconds\": %.4f, \"tokens_per_s\": %.2f, \"peak_mem_gb\": %.2f}\n",
                model_dir.c_str(), quant.c_str(), (long long)b, (long long)prompt_len, (long long)new_tokens,
                opt.cuda_graphs ? "on" : "off", nf4::gemv_enabled() ? "on" : "off", nf4::mma_enabled() ? "on" : "off",
                fused::decode_attention_enabled() ? "kernel" : "sdpa", s, tps, peak_memory_gb(dev));
    std::fflush(stdout);
    if (b == batches.back()) {  // R1DIST_PROFILE_STEP=1 + R1DIST_PROFILE_OUT: one more run traced
      auto profiler = StepProfiler::from_env(0);
      profiler.before(1);
      generate(model, prompts, opt);
      profiler.after(1);
    }
  }
  return 0;
}

// lm_head + cross-entropy of one micro-batch at a preset's shape, forward + backward: the
// full logits (what the trainer did before) against the token chunks of model/lm_loss.h.
int bench_loss(const Args& a) {
  const auto dev = parse_device(a.str("device"));
  select_device(dev);
  const auto cfg = qwen2_preset(a.str("preset"));
  const auto dtype = to_scalar_type(flag_keys(a, "none").model.dtype);
  const int64_t tokens = a.i64("tokens");
  const auto opts = at::TensorOptions().dtype(dtype).device(dev);
  const auto weight = at::randn({cfg.vocab_size, cfg.hidden_size}, opts) * 0.02;
  const auto h0 = at::randn({1, tokens, cfg.hidden_size}, opts);
  const auto labels = at::randint(0, cfg.vocab_size, {1, tokens}, at::TensorOptions().dtype(at::kLong).device(dev));
  double loss_full = 0, loss_chunked = 0;
  for (const bool chunked : {false, true}) {
    compat::synchronize(dev);
    reset_peak_memory(dev);
    const double base_gb = peak_memory_gb(dev);
    double loss = 0;
    const double s = time_median(dev, 1, int(a.i64("reps")), [&] {
      auto h = h0.clone().requires_grad_(true);
      const auto l = chunked ? chunked_lm_loss_sum(h, weight, labels, a.i64("chunk"))
                             : causal_lm_loss_sum(at::linear(h, weight), labels);
      l.backward();
      loss = l.item<double>();
    });
    (chunked ? loss_chunked : loss_full) = loss;
    std::printf("{\"bench\": \"loss\", \"preset\": \"%s\", \"tokens\": %lld, \"vocab\": %lld, \"path\": \"%s\", "
                "\"chunk\": %lld, \"seconds\": %.4f, \"peak_gb_above_inputs\": %.2f, \"loss\": %.6f}\n",
                a.str("preset").c_str(), (long long)tokens, (long long)cfg.vocab_size,
                chunked ? "chunked" : "full logits", chunked ? (long long)a.i64("chunk") : 0LL, s,
                peak_memory_gb(dev) - base_gb, loss);
    std::fflush(stdout);
  }
  std::printf("{\"bench\": \"loss\", \"loss_rel_diff\": %.3g}\n", std::abs(loss_chunked - loss_full) / std::abs(loss_full));
  return 0;
}

// The MFU denominator: what a large bf16 matrix product reaches on one H200 from libtorch
// (measured; docs/PERFORMANCE.md).
constexpr double kMfuPeakFlops = 790e12;

// Useful FLOPs per token of LoRA training: 4 x the linear parameters (every
// projection and lm_head; forward + input gradient, no base weight gradient) plus causal
// attention, 6 x layers x hidden x seq. Recomputation is not counted.
double useful_flops_per_token(const Qwen2Config& c, int64_t seq) {
  const double h = double(c.hidden_size), q = double(c.q_dim()), kv = double(c.kv_dim()),
               i = double(c.intermediate_size);
  const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * i;
  const double linear = double(c.num_hidden_layers) * per_layer + double(c.vocab_size) * h;
  return 4 * linear + 6 * double(c.num_hidden_layers) * h * double(seq);
}

// A preset's model in memory with random weights (transformers' init scale), the projections
// quantised to NF4 when asked, LoRA on all seven projections.
Qwen2Model random_model(const Qwen2Config& cfg, at::ScalarType dtype, const at::Device& dev, bool nf4, int64_t r) {
  Qwen2Model m(cfg, dtype, dev);
  {
    at::NoGradGuard ng;
    auto gen = at::globalContext().defaultGenerator(dev);
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(1);
    }
    for (auto& [name, t] : m.named_weights()) {
      if (name.find("norm") != std::string::npos) t->fill_(1.0);
      else if (name.find("bias") != std::string::npos) t->zero_();
      else t->normal_(0.0, 0.02);
    }
  }
  if (nf4)
    for (auto& p : m.projections(projection_names())) p.layer->quantize(true, p.module_path);
  m.attach_lora(LoraSpec{r, double(r), 0.0, false}, projection_names(), 3);
  return m;
}

int bench_train(const Args& a) {
  const auto& pg = dist_group();
  const auto dev = parse_device(a.str("device"), pg.local_rank);
  select_device(dev);
  const double baseline_tps = bench_baseline_tps(a);  // read before any work: a bad file fails at once
  const double busbw_flag = a.real("busbw"), latency_us = a.real("latency-us");
  if (busbw_flag < 0 || latency_us < 0) throw UsageError("bench train: --busbw and --latency-us must be >= 0");
  const auto cfg = qwen2_preset(a.str("preset"));
  const Config keys = flag_keys(a, "nf4", /*checkpointing=*/true);
  const auto dtype = to_scalar_type(keys.model.dtype);
  const int64_t seq = a.i64("seq"), micro = a.i64("micro-batch"), accum = a.i64("grad-accum");
  const int64_t steps = a.i64("steps"), warm = a.i64("warmup");
  const std::string ckpt = to_string(keys.train.checkpointing), quant = to_string(keys.quant.mode);
  if (ckpt != "layer" && ckpt != "none") throw UsageError("bench train: --checkpointing must be layer or none");
  if (seq < 2 || micro < 1 || accum < 1 || steps < 1 || warm < 0)
    throw UsageError("bench train: --seq >= 2, --micro-batch, --grad-accum, --steps >= 1 and --warmup >= 0");
  const int64_t keep = a.i64("keep-layers"), mlp = a.i64("recompute-mlp-layers"), offload = a.i64("offload-layers");
  if (keep < 0 || mlp < 0 || offload < 0)
    throw UsageError("bench train: --keep-layers, --recompute-mlp-layers and --offload-layers must be >= 0");
  const std::string fused_opt = a.str("fused");
  if (fused_opt != "auto" && fused_opt != "on" && fused_opt != "off")
    throw UsageError("bench train: --fused must be auto, on or off");
  const bool fused_path = fused_opt == "auto" ? fused::on_by_default(dev) : fused_opt == "on";
  const double budget = a.real("memory-budget");
  if (budget < 0) throw UsageError("bench train: --memory-budget GB must be >= 0");
  // The trainer's rule (config/memory_estimate.h: recompute_plan), and its config's checks.
  Config run = keys;
  run.lora.r = a.i64("rank");
  run.train.micro_batch = micro;
  run.data.max_seq_len = seq;
  run.train.keep_layers = keep;
  run.train.recompute_mlp_layers = mlp;
  run.train.offload_layers = offload;
  run.train.offload_recomputed_inputs = a.has("offload-recomputed-inputs");
  run.train.offload_attention = a.has("offload-attention");
  set_config_value(run, "train.offload", a.str("offload"), "--offload");
  run.train.memory_budget_gb = budget;
  if (const auto conflicts = recompute_key_conflicts(run.train); !conflicts.empty())
    throw UsageError("bench train: " + conflicts.front() +
                     " (the flags --memory-budget, --keep-layers, --recompute-mlp-layers, --checkpointing)");
  if (const auto conflicts = offload_key_conflicts(run.train); !conflicts.empty())
    throw UsageError("bench train: " + conflicts.front() +
                     " (the flags --offload, --offload-layers, --offload-recomputed-inputs, --offload-attention, "
                     "--memory-budget)");
  // --offload auto: the trainer's rates, timed here (tensor/offload.h).
  OffloadRates rates;
  if (run.train.offload == OffloadChoice::automatic && fused_path) {
    rates = measure_offload_rates(dev, cfg.hidden_size, cfg.intermediate_size, dtype, pinned_host_cap(pg.local_world));
    log::info("bench train: --offload auto: host link ", rates.link_bytes_per_s / 1e9, " GB/s, matrix products ",
              rates.flops_per_s / 1e12, " TFLOP/s");
  }
  auto est = estimate_training_memory(cfg, run, fused_path ? LayerPath::fused : LayerPath::plain, rates);
  // The trainer's refusal too: a shape whose estimate exceeds this rank's share of the device
  // stops here, before the model is built and the batch drawn.
  const int sharing = ranks_sharing_device(a.str("device"), pg.local_rank, pg.local_world);
  try {
    check_memory_fits(est, device_memory_bytes(dev) / sharing, dev.str(), run);
  } catch (const UsageError& e) {
    throw UsageError(std::string("bench train: ") + e.what() +
                     " (the flags --micro-batch, --seq, --checkpointing, --memory-budget)");
  }
  if (budget > 0)
    log::info("bench train: --memory-budget ", budget, " GB: ", est.plan.describe(cfg.num_hidden_layers),
              " (estimate ", est.describe(), ")");
  auto t_load = std::chrono::steady_clock::now();
  auto model = random_model(cfg, dtype, dev, quant == "nf4", a.i64("rank"));
  model.set_fused(fused_path);
  compat::synchronize(dev);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  if (rates.known()) {  // the trainer's second plan: priced with this model's own layer (train/build_run.h)
    const double product = rates.flops_per_s;
    rates = with_layer_forward_rate(model, run, rates);
    est = estimate_training_memory(cfg, run, LayerPath::fused, rates);
    log::info("bench train: --offload auto: a layer's forward runs at ", rates.flops_per_s / 1e12,
              " TFLOP/s (the product alone ", product / 1e12, "): ", est.plan.describe(cfg.num_hidden_layers),
              " (estimate ", est.describe(), ")");
  }
  const RecomputePlan plan = est.plan;
  const std::string plan_text = plan.describe(cfg.num_hidden_layers);
  log::info("bench train: ", a.str("preset"), " (", cfg.num_hidden_layers, " layers) on ", dev.str(), ", ",
            a.str("dtype"), ", base ", quant, ", ", model.lora().flat().numel(), " LoRA parameters, built in ", load_s,
            " s; seq ", seq, " x micro-batch ", micro, " x grad_accum ", accum, ", checkpointing ", ckpt,
            ckpt == "layer" || plan.offload > 0 || plan.offload_inputs ? " (" + plan_text + ")" : std::string(),
            ", fused kernels ", model.fused() ? "on" : "off");
  AdamW opt(model.lora().flat(), AdamWConfig{});
  auto grad = model.lora().flat_grad();
  // The step's all-reduce buffer (the gradients, then the loss slot) and its communicator.
  auto buffer = model.lora().reduce_buffer();
  buffer.zero_();
  const int64_t n_grad = grad.numel();
  auto comm = make_communicator(Backend::automatic, dev);
  double ar_total = 0, wait_total = 0;
  auto gen = at::globalContext().defaultGenerator(dev);
  {
    // The same weights on every rank (random_model's seed), each rank's own tokens.
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(1000 + uint64_t(pg.rank));
  }
  const auto longs = at::TensorOptions().dtype(at::kLong).device(dev);
  const double count = double(micro * (seq - 1) * accum) * pg.world;  // the global batch's loss tokens
  DeviceTimer timer(dev);
  auto profiler = StepProfiler::from_env(0);
  double fwd = 0, loss_t = 0, bwd = 0, opt_t = 0, total = 0, last_loss = 0;
  reset_peak_memory(dev);
  for (int64_t k = 0; k < warm + steps; ++k) {
    profiler.before(k + 1);
    timer.clear();
    const size_t start = timer.mark();
    std::vector<size_t> marks;
    auto step_loss = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(dev));
    for (int64_t m = 0; m < accum; ++m) {
      const auto ids = at::randint(0, cfg.vocab_size, {micro, seq}, gen, longs);
      const size_t m0 = timer.mark();
      const auto h = model.hidden_states_train(ids, plan);
      const size_t m1 = timer.mark();
      const auto loss = chunked_lm_loss_sum(h, model.lm_head_weight(), ids) / count;
      const size_t m2 = timer.mark();
      loss.backward();
      const size_t m3 = timer.mark();
      step_loss += loss.detach();
      marks.insert(marks.end(), {m0, m1, m2, m3});
    }
    // The collective alone: the device done and every rank arrived (the wait is imbalance).
    buffer.narrow(0, n_grad, 1).copy_(step_loss.reshape({1}));
    compat::synchronize(dev);
    const auto w0 = std::chrono::steady_clock::now();
    dist_barrier("bench train: barrier before the all-reduce");
    const auto w1 = std::chrono::steady_clock::now();
    comm->allreduce_sum(buffer);
    compat::synchronize(dev);
    comm->take_seconds();
    const double wait_s = std::chrono::duration<double>(w1 - w0).count(),
                 ar_s = seconds_since(w1);
    const size_t o0 = timer.mark();
    {
      at::NoGradGuard ng;
      clip_grad_norm(grad, 1.0);
      auto flat = model.lora().flat();
      opt.step(flat, grad, 1e-4);
    }
    const size_t end = timer.mark();
    last_loss = buffer[n_grad].item<double>();
    buffer.zero_();
    profiler.after(k + 1);
    const double step_s = timer.seconds(start, end);
    double f = 0, l = 0, b = 0;
    for (size_t i = 0; i < marks.size(); i += 4) {
      f += timer.seconds(marks[i], marks[i + 1]);
      l += timer.seconds(marks[i + 1], marks[i + 2]);
      b += timer.seconds(marks[i + 2], marks[i + 3]);
    }
    const double o = timer.seconds(o0, end);
    log::info("bench train: step ", k + 1, k < warm ? " (warm-up)" : "", ": ", step_s, " s (all-reduce ", ar_s,
              " s), loss ", last_loss);
    if (k < warm) continue;
    fwd += f, loss_t += l, bwd += b, opt_t += o, total += step_s, ar_total += ar_s, wait_total += wait_s;
  }
  const double peak_gb = peak_memory_gb(dev);  // the steps' peak, before the link's buffers below
  // With offload: the host link's speed alone, one direction at a time (a 1 GB copy to
  // page-locked memory and back, median of 3), beside the bytes each forward moved.
  double link_to_host = 0, link_to_device = 0;
  if (model.offloaded_bytes() > 0 && dev.is_cuda()) {
    const auto d = at::empty({int64_t(1) << 30}, at::TensorOptions().dtype(at::kByte).device(dev));
    const auto hbuf = at::empty_like(d, at::TensorOptions().device(at::kCPU).pinned_memory(true));
    link_to_host = 1.0 / time_median(dev, 1, 3, [&] { hbuf.copy_(d, /*non_blocking=*/true); });
    link_to_device = 1.0 / time_median(dev, 1, 3, [&] { d.copy_(hbuf, /*non_blocking=*/true); });
  }
  // Every rank's figures on rank 0: "step compute all-reduce wait peak".
  const double compute_total = total - ar_total - wait_total;
  char mine[256];
  std::snprintf(mine, sizeof mine, "%.9g %.9g %.9g %.9g %.9g", total, compute_total, ar_total, wait_total, peak_gb);
  const auto ranks = dist_gather_strings(mine, 0, "bench train: per-rank figures");
  if (pg.rank != 0) return 0;
  const double per_rank_tokens = double(micro * seq * accum * steps);
  double step_max = 0, ar_max = 0, wait_max = 0, compute_mean = 0, peak_max = 0;
  nlohmann::json per_rank = nlohmann::json::array();
  for (const auto& r : ranks) {
    std::istringstream in(r);
    double st = 0, cs = 0, as = 0, ws = 0, pk = 0;
    in >> st >> cs >> as >> ws >> pk;
    step_max = std::max(step_max, st), ar_max = std::max(ar_max, as), wait_max = std::max(wait_max, ws);
    peak_max = std::max(peak_max, pk);
    compute_mean += cs / double(ranks.size());
    per_rank.push_back(std::round(per_rank_tokens / cs * 10) / 10);  // its compute alone: stragglers show
  }
  const double step_s = step_max / double(steps), allreduce_s = ar_max / double(steps);
  const double bytes = double(buffer.numel()) * 4;
  const double total_tps = per_rank_tokens * pg.world / step_max;
  const double tps = total_tps / pg.world;  // per rank: comparable with a one-rank run
  const double mfu = tps * useful_flops_per_token(cfg, seq) / kMfuPeakFlops;
  const double sp = double(steps);
  nlohmann::ordered_json j;
  j["bench"] = "train";
  j["preset"] = a.str("preset");
  j["device"] = dev.str();
  j["backend"] = comm->name();
  j["dtype"] = a.str("dtype");
  j["quant"] = quant;
  j["seq"] = seq;
  j["micro_batch"] = micro;
  j["grad_accum"] = accum;
  j["checkpointing"] = ckpt;
  j["keep_layers"] = plan.kept(cfg.num_hidden_layers);
  j["recompute_mlp_layers"] = plan.mlp;
  j["offload_layers"] = std::min(plan.offload, cfg.num_hidden_layers - plan.layers);
  j["offload_recomputed_inputs"] = plan.offload_inputs;
  j["offload_attention"] = plan.offload_attention;
  j["offload"] = to_string(run.train.offload);
  j["offload_gb_per_forward"] = double(model.offloaded_bytes()) / 1e9;
  j["offload_layer_tflops"] = rates.flops_per_s / 1e12;  // --offload auto: the rate it planned with
  j["host_link_gbps"] = {{"to_host", link_to_host * (1 << 30) / 1e9}, {"to_device", link_to_device * (1 << 30) / 1e9}};
  j["estimate_gb"] = est.total() / 1e9;
  j["fused"] = model.fused();
  j["steps"] = steps;
  j["ranks"] = pg.world;
  j["step_s"] = step_s;
  j["tokens_per_s"] = tps;
  j["tokens_per_s_total"] = total_tps;
  j["tokens_per_s_per_rank"] = per_rank;
  j["mfu"] = mfu;
  j["peak_mem_gb"] = peak_max;
  j["loss"] = last_loss;
  j["allreduce_s"] = allreduce_s;
  j["allreduce_share"] = allreduce_s / step_s;
  j["allreduce_bytes"] = int64_t(bytes);
  j["wait_s"] = wait_max / sp;
  if (!std::isnan(baseline_tps)) {
    j["baseline_tokens_per_s"] = baseline_tps;
    j["efficiency"] = tps / baseline_tps;
  }
  j["split_s"] = {{"forward", fwd / sp},   {"lm_head_loss", loss_t / sp}, {"backward", bwd / sp},
                  {"allreduce", ar_total / sp}, {"wait", wait_total / sp}, {"optimizer", opt_t / sp},
                  {"other", (total - fwd - loss_t - bwd - opt_t - ar_total - wait_total) / sp}};
  // The projection (report/scaling.h): T the mean rank's compute per step; B given, else
  // measured here (more than one rank), else the stated assumption.
  const double T = compute_mean / sp;
  double B = busbw_flag;
  std::string source = "--busbw";
  if (!(B > 0) && pg.world > 1) {
    B = bus_bandwidth_gbps(bytes, allreduce_s, pg.world);
    source = "measured by this run at " + std::to_string(pg.world) + " ranks";
  }
  if (!(B > 0)) B = kAssumedBusbwGBps, source = "assumed: no --busbw, one rank";
  nlohmann::ordered_json proj;
  proj["model"] = "ring all-reduce, no overlap with the backward: T / (T + 2(N-1)/N*S/B + 2(N-1)*L)";
  proj["step_s"] = T;
  proj["bytes"] = int64_t(bytes);
  proj["busbw_gbps"] = B;
  proj["busbw_source"] = source;
  proj["latency_us"] = latency_us;
  proj["points"] = nlohmann::json::array();
  for (int n : projected_gpu_counts()) {
    const double tc = ring_allreduce_seconds(bytes, n, B, latency_us);
    proj["points"].push_back({{"gpus", n}, {"t_comm_s", tc}, {"efficiency", projected_efficiency(T, tc)}});
  }
  j["projection"] = proj;
  std::printf("%s\n", j.dump().c_str());
  // The same projection as a table on stderr: stdout stays the one JSON line to parse.
  std::fflush(stdout);
  std::fprintf(stderr, "projection (%s, seq %lld x %lld, %.1f MB reduced per step, T = %.4f s compute, B = %.3g GB/s %s, "
              "L = %.1f us; no overlap):\n  %6s %12s %12s\n",
              a.str("preset").c_str(), (long long)seq, (long long)micro, bytes / 1e6, T, B, source.c_str(), latency_us,
              "GPUs", "t_comm s", "efficiency");
  for (const auto& p : proj["points"])
    std::fprintf(stderr, "  %6d %12.5f %11.1f%%\n", p["gpus"].get<int>(), p["t_comm_s"].get<double>(),
                100 * p["efficiency"].get<double>());
  std::fflush(stdout);
  return 0;
}

namespace {

// The one list of kinds: dispatch, --help, the top-level help and the errors read it.
struct BenchKind {
  const char* name;
  const char* measures;
  int (*fn)(const Args&);
  bool every_rank = false;  // runs on every rank under mpirun / srun (all-reduces); else once, on rank 0
};
const BenchKind kBenchKinds[] = {
    {"nf4", "bytes per weight of a preset's NF4 projections; dequantisation bandwidth against a copy", bench_nf4},
    {"data", "the data pipeline (load, select, template, tokenize): rows/s and tokens/s per thread count",
     bench_data},
    {"checkpoint", "write and read speed of an HDF5 checkpoint of a preset's adapters and AdamW moments",
     bench_checkpoint},
    {"generate", "greedy decoding tokens/s of a model directory per batch size (forced length, no EOS); with "
                 "R1DIST_PROFILE_STEP=1 and R1DIST_PROFILE_OUT=FILE one more run of the last batch size is traced",
     bench_generate},
    {"loss", "the chunked lm_head + cross-entropy against the full logits: time and memory", bench_loss},
    {"train", "training steps at a preset's shape on random weights, on every rank with the gradient all-reduce: "
              "tokens/s, MFU, peak memory, the split, scaling",
     bench_train, true},
    {"allreduce", "the training step's all-reduce of a preset's LoRA gradient buffer alone: time, algbw, busbw",
     bench_allreduce, true},
    {"balance", "from a config's batch plan alone: how evenly its steps spread over 1..N ranks, packed and padded",
     bench_balance},
};

}  // namespace

std::string bench_kind_names() {
  std::string out;
  for (const auto& k : kBenchKinds) out += (out.empty() ? "" : ", ") + std::string(k.name);
  return out;
}

bool bench_runs_on_every_rank(int argc, char** argv) {
  std::string kind;
  for (int i = 1; i < argc && kind.empty(); ++i) {
    const std::string w = argv[i];
    if (w == "--kind" && i + 1 < argc) kind = argv[i + 1];
    else if (w.rfind("--kind=", 0) == 0) kind = w.substr(7);
    else if (w[0] != '-' && (i == 1 || std::string(argv[i - 1]).rfind("--", 0) != 0)) kind = w;
  }
  for (const auto& k : kBenchKinds)
    if (kind == k.name) return k.every_rank;
  return false;
}

int cmd_bench(int argc, char** argv) {
  std::string about = "Benchmarks (numbers printed, nothing asserted). KIND:";
  for (const auto& k : kBenchKinds) {
    char line[256];
    std::snprintf(line, sizeof line, "\n  %-11s %s", k.name, k.measures);
    about += line;
  }
  Args a("r1dist bench", about + "\n");
  a.option_str("kind", "what to measure")
      .positional({{"kind", "KIND"}})
      .option_str("model", "generate: model directory")
      .option_str("batch", "generate: batch sizes, comma-separated", "1,16")
      .option_int("prompt-len", "generate: prompt tokens", 128)
      .option_int("new-tokens", "generate: new tokens per prompt (forced: no EOS)", 256)
      .option_str("dtype", "generate, loss, train: compute dtype", "bf16")
      .option_str("quant", "generate, train: base weights nf4 or none (train: default nf4)")
      .option_int("reps", "generate, loss, allreduce: timed runs (the median is printed)", 3)
      .option_str("graphs", "generate: on = decode steps replayed as CUDA graphs, off = launched one by one", "on")
      .option_str("preset", "model shape", "r1-distill-qwen-14b")
      .option_str("device", "auto, cpu, cuda", "auto")
      .option_int("layers", "layers to quantise (0 = all)", 0)
      .option_str("data", "data: JSON or JSONL file of rows")
      .option_str("tokenizer", "data: tokenizer directory or tokenizer.json")
      .option_int("replicate", "data: copies of the file's rows", 100)
      .option_str("threads", "data: tokenizer thread counts, comma-separated", "1,2")
      .option_int("rank", "checkpoint, train, allreduce: LoRA rank (train: alpha = rank)", 16)
      .option_int("seq", "train: tokens per row", 8192)
      .option_int("micro-batch", "train: rows per micro-batch", 1)
      .option_int("grad-accum", "train: micro-batches per step", 1)
      .option_int("steps", "train: timed steps", 3)
      .option_int("warmup", "train, allreduce: untimed steps (calls) first", 1)
      .option_int("bytes", "allreduce: the buffer's size in bytes instead of the preset's LoRA gradients")
      .option_str("baseline", "train: a file holding a one-rank `bench train` JSON line: efficiency = tokens/s per "
                              "rank here / its tokens_per_s")
      .option_real("baseline-tps", "train: the baseline's tokens/s per rank, given directly")
      .option_real("busbw", "train: bus bandwidth in GB/s for the projection (0: measured here at > 1 rank, else "
                            "the assumed default, docs/PERFORMANCE.md)", 0)
      .option_real("latency-us", "train: per-hop all-reduce latency in microseconds for the projection",
                    kAssumedLatencyUs)
      .option_str("checkpointing", "train: layer or none", "layer")
      .option_int("keep-layers", "train: with layer checkpointing, the last N layers keep their activations", 0)
      .option_int("recompute-mlp-layers", "train: with layer checkpointing, the N layers before the kept ones recompute only their MLP's gate and up (train.recompute_mlp_layers)", 0)
      .option_int("offload-layers", "train: of the layers not recomputed whole, N keep their activations in host memory until the backward (train.offload_layers; fused path)", 0)
      .option_str("offload", "train: manual (what --offload-layers and --offload-recomputed-inputs say) or auto (with --memory-budget, the planner chooses them from the host link's speed and the model's own layer forward, timed first; train.offload)", "manual")
      .flag("offload-attention", "train: the offloaded layers keep q, k, v and the attention's output in host memory too, recomputing the attention (train.offload_attention; fused path)")
      .flag("offload-recomputed-inputs", "train: the layers recomputed whole keep their input in host memory until the backward (train.offload_recomputed_inputs; fused path)")
      .option_str("fused", "train: fused RMSNorm/RoPE/SwiGLU kernels: auto (on CUDA), on or off", "auto")
      .option_real("memory-budget", "train: with layer checkpointing, the plan with the least recomputation that the memory estimate fits in this many GB (train.memory_budget_gb)", 0)
      .option_int("tokens", "loss: tokens of the micro-batch", 16384)
      .option_int("chunk", "loss: tokens per chunk", kLossChunkTokens)
      .option_str("dir", "checkpoint: where the file is written (and removed)", "/tmp")
      .option_str("cfg", "balance: the run's config file")
      .option_list("set", "balance: section.key=value, as for training (repeatable)")
      .option_str("ranks", "balance: rank counts, comma-separated", "1,2,4,8,16,64")
      .option_int("global-batch", "balance: rows per step at every rank count (0: micro_batch x grad_accum x ranks)", 0);
  if (!a.parse(argc, argv)) return 0;
  const auto kind = a.required("kind");
  for (const auto& k : kBenchKinds)
    if (kind == k.name) return k.fn(a);
  throw UsageError("bench: unknown kind '" + kind + "' (known: " + bench_kind_names() + ")");
}

}  // namespace r1dist
