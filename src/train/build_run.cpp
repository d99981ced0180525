// The build phase (train/build_run.h). Each stage is one function; Run's constructor calls
// them in order.
#include "r1dist/train/build_run.h"

#include <ATen/Parallel.h>
#include <malloc.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <thread>

#include "r1dist/base/error.h"
#include "r1dist/data/packing.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/log.h"
#include "r1dist/model/build_model.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tensor/device_timer.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/tensor/offload.h"
#include "r1dist/train/rng_state.h"

namespace r1dist {

namespace {

// This rank's device, and the process settings that keep a CPU rank fast.
at::Device prepare_device(const Config& cfg, const ProcessGroup& pg) {
  const at::Device device = resolve_device(cfg.model.device, pg.local_rank);
  select_device(device);
  if (device.is_cpu()) {
    // Keep freed memory in the process: the vocabulary-sized logits (hundreds of MB per
    // micro-batch) otherwise go back to the kernel and are page-faulted in again every time,
    // which made CPU steps about 8x slower on a 2-core machine.
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
  }
  // CPU threads: the node's cores shared among its ranks (oversubscribed OpenMP threads spin
  // and slow every rank down many times over). OMP_NUM_THREADS, when set, wins.
  if (!std::getenv("OMP_NUM_THREADS")) {
    const int hw = std::max(1u, std::thread::hardware_concurrency());
    at::set_num_threads(std::max(1, hw / std::max(1, pg.local_world)));
  }
  return device;
}

// Rank 0's figures on every rank: one plan for the job (plans differ in speed, not math).
OffloadRates broadcast_rates(OffloadRates rates) {
  double figures[3] = {rates.link_bytes_per_s, rates.flops_per_s, rates.host_bytes};
  dist_broadcast(figures, sizeof figures, 0, "train.offload = auto: rank 0's link and compute rates");
  return {figures[0], figures[1], figures[2]};
}

// train.offload = "auto": the host link and compute rates the plan is priced with (all zero
// otherwise, and on the plain layer path, which offloads nothing). Every rank of the node pins
// its own share of the machine's memory: at most 80% of it in all.
OffloadRates offload_rates(const Config& cfg, const at::Device& device, const ProcessGroup& pg) {
  if (cfg.train.offload != OffloadChoice::automatic) return {};
  if (!fused::on_by_default(device)) {
    log::warn("train.offload = auto moves nothing here: it applies to the fused layer path (the GPU's) only");
    return {};
  }
  const auto mc = read_qwen2_config(cfg.model.path);
  const auto rates = broadcast_rates(measure_offload_rates(
      device, mc.hidden_size, mc.intermediate_size, to_scalar_type(cfg.model.dtype),
      pinned_host_cap(pg.local_world)));
  log::info("train.offload = auto: host link ", rates.link_bytes_per_s / 1e9, " GB/s, matrix products ",
            rates.flops_per_s / 1e12, " TFLOP/s (until a layer is timed), up to ", rates.host_bytes / 1e9,
            " GB of page-locked host memory per rank");
  return rates;
}

// The memory a rank of this config needs (config/memory_estimate.h) against its share of the
// device's (ranks of a node that share one device split it evenly): refuses (UsageError,
// with the estimate) when it cannot fit.
// train.checkpointing = "auto" is resolved here, in `cfg`, for this device (a budget of the
// rank's share of the GPU unless one is set); the budget check applies to a budget the config set.
MemoryEstimate check_memory(Config& cfg, const at::Device& device, const ProcessGroup& pg,
                            const OffloadRates& rates) {
  const auto mc = read_qwen2_config(cfg.model.path);
  const int sharing = ranks_sharing_device(to_string(cfg.model.device), pg.local_rank, pg.local_world);
  const double capacity = device_memory_bytes(device) / sharing;
  const std::string where =
      device.str() + (sharing > 1 ? " (its share: " + std::to_string(sharing) + " ranks of this node use it)" : "");
  const bool automatic = cfg.train.checkpointing == Checkpointing::automatic;
  const Config set = cfg;
  cfg = resolve_checkpointing(cfg, device.is_cuda() ? capacity : 0.0);
  const bool fused_path = fused::on_by_default(device);
  const double host = device_memory_bytes(at::Device(at::kCPU));
  const auto est =
      estimate_training_memory(mc, cfg, fused_path ? LayerPath::fused : LayerPath::plain, rates);
  check_memory_fits(est, capacity, where, set);
  log::info("memory estimate per rank: ", est.describe(), " of ", capacity / 1e9, " GB on ", where);
  if (cfg.train.checkpointing == Checkpointing::layer && cfg.train.memory_budget_gb <= 0)
    log::info("train.checkpointing = layer: the backward's plan for the ", mc.num_hidden_layers, " layers: ",
              est.plan.describe(mc.num_hidden_layers));
  if (cfg.train.offload_layers > 0 && est.plan.offload == 0)
    log::warn("train.offload_layers = ", cfg.train.offload_layers, " moves nothing here: it applies to the fused "
              "layer path (the GPU's) only");
  if (cfg.train.offload_recomputed_inputs && !est.plan.offload_inputs)
    log::warn("train.offload_recomputed_inputs moves nothing here: it applies to the fused layer path (the GPU's) "
              "only");
  if (est.host > 0) {
    const std::string keys = cfg.train.offload == OffloadChoice::automatic
                                 ? std::string("train.offload = auto")
                                 : std::string(est.plan.offload > 0 ? "train.offload_layers" : "") +
                                       (est.plan.offload > 0 && est.plan.offload_inputs ? " and " : "") +
                                       (est.plan.offload_inputs ? "train.offload_recomputed_inputs" : "");
    log::info(keys, ": ", est.plan.describe(mc.num_hidden_layers), "; about ", est.host / 1e9,
              " GB of page-locked host memory per rank");
    if (host > 0 && est.host > pinned_host_cap(pg.local_world))
      throw UsageError("what " + keys + " move to the host needs about " +
                       std::to_string(int64_t(est.host / 1e9 + 0.5)) + " GB of page-locked memory per rank, " +
                       std::to_string(pg.local_world) +
                       " rank(s) on this node: more than " + std::to_string(int(kPinnedHostShare * 100 + 0.5)) +
                       "% of its " + std::to_string(int64_t(host / 1e9)) +
                       " GB\nHINT: lower train.offload_layers or set train.offload_recomputed_inputs = false");
  }
  if (cfg.train.memory_budget_gb > 0) {
    const bool from_device = automatic && set.train.memory_budget_gb <= 0;
    log::info(from_device ? "train.checkpointing = auto: a budget of " : "train.memory_budget_gb = ",
              cfg.train.memory_budget_gb, " GB",
              from_device ? " (" + std::to_string(int(kAutoBudgetShare * 100 + 0.5)) + "% of the rank's share of the device)" : "",
              ": the backward's plan for the ", mc.num_hidden_layers, " layers: ",
              est.plan.describe(mc.num_hidden_layers));
  }
  return est;
}

// Refuses data whose token ids do not fit the model's embedding (check_token_id).
void check_token_ids(const Config& cfg, const Dataset& data, const Tokenizer& tok) {
  int32_t top = -1;
  const Example* where = nullptr;
  const char* split = "";
  for (const auto* rows : {&data.train, &data.eval})
    for (const auto& e : *rows)
      for (int32_t id : e.ids)
        if (id > top) top = id, where = &e, split = rows == &data.train ? "training" : "held-out";
  if (!where) return;
  check_token_id(top, std::string(split) + " row " + std::to_string(where->row) + " of " + cfg.data.path,
                 cfg.model.path, read_qwen2_config(cfg.model.path).vocab_size, tok);
}

// Rank 0 tokenizes and fills the cache; the others then read it. Warns when a row (as
// data.max_seq_len leaves it) goes past the model's max_position_embeddings.
Dataset load_data(const Config& cfg, const Tokenizer& tok, const ProcessGroup& pg, const FaultPlan& faults) {
  if (cfg.data.path.empty()) throw UsageError("data.path is required to train (" + cfg.source_path + ")");
  faults.at_startup(pg.rank);
  const auto cache_dir = cfg.output.dir + "/cache";
  Dataset data;
  if (pg.rank == 0) data = build_dataset(cfg.data, tok, uint64_t(cfg.train.seed), cache_dir);
  dist_barrier("MPI_Barrier after rank 0 tokenized the data");
  if (pg.rank != 0) data = build_dataset(cfg.data, tok, uint64_t(cfg.train.seed), cache_dir);
  check(!data.train.empty(), "no training rows left after selection (" + cfg.data.path + ")");
  int64_t tokens = 0;
  for (const auto& e : data.train) tokens += int64_t(e.ids.size());
  log::info("data ", cfg.data.path, ": ", data.load.rows_in_file, " rows in the file, ", data.load.skipped,
            " skipped, ", data.train.size(), " train / ", data.eval.size(), " eval rows, ", tokens,
            " train tokens, ", data.truncated, " truncated, ", data.dropped, " dropped, ", data.without_loss,
            " without a loss token (max_seq_len ",
            cfg.data.max_seq_len, ")", data.from_cache ? ", from cache" : "");
  int64_t longest = 0;  // positions restart at each row, packed or not
  for (const auto* rows : {&data.train, &data.eval})
    for (const auto& e : *rows) longest = std::max(longest, int64_t(e.ids.size()));
  warn_past_max_positions(read_qwen2_config(cfg.model.path), cfg.model.path, longest,
                          "the longest row (" + std::to_string(longest) +
                              " tokens; data.max_seq_len = " + std::to_string(cfg.data.max_seq_len) + ")",
                          "lower data.max_seq_len to the model's max_position_embeddings");
  return data;
}

// The batch plan; with data.packing, what step 1 packs into, and a warning when ranks would
// idle through such steps.
BatchPlan make_plan(const Config& cfg, const Dataset& data, int64_t global_batch, int world) {
  BatchPlan plan(example_lengths(data.train), uint64_t(cfg.train.seed), global_batch, cfg.data.group_by_length);
  if (!cfg.data.packing) return plan;
  const auto step1 = summarize_packing(plan, 0, example_lengths(data.train), cfg.data.max_seq_len, world);
  log::info("packing: step 1's ", step1.rows, " rows (", step1.tokens, " tokens) in ", step1.sequences,
            " sequences of <= ", cfg.data.max_seq_len, " tokens",
            world > 1 ? ", " + std::to_string(step1.min_rank_tokens) + " to " + std::to_string(step1.max_rank_tokens) +
                            " tokens per rank"
                      : std::string());
  if (step1.idle_ranks > 0)
    log::warn("packing: step 1 has ", step1.rows, " rows for ", world, " ranks: ", step1.idle_ranks,
              " rank(s) idle through such steps\nHINT: raise train.grad_accum (a larger global batch) or run fewer "
              "ranks");
  return plan;
}

// The model with LoRA attached, and this rank's dropout stream.
Qwen2Model rank_model(const Config& cfg, const at::Device& device, const ProcessGroup& pg) {
  Qwen2Model model = build_model(cfg, device);
  at::manual_seed(rank_seed(cfg.train.seed, pg.rank));
  return model;
}

}  // namespace

// Rows per step. The checks of the data against the batch and the model: refuses a global
// batch larger than the training rows (every step would repeat rows), then ids beyond the
// model's vocabulary.
int64_t checked_global_batch(const Config& cfg, const Dataset& data, const Tokenizer& tok, int world) {
  const int64_t g = cfg.train.micro_batch * cfg.train.grad_accum * world;
  if ((cfg.train.steps > 0 || cfg.train.epochs > 0) && g > int64_t(data.train.size()))
    throw UsageError("train.micro_batch x train.grad_accum x ranks = " + std::to_string(cfg.train.micro_batch) +
                     " x " + std::to_string(cfg.train.grad_accum) + " x " + std::to_string(world) + " = " +
                     std::to_string(g) + " rows per step, but " + cfg.data.path + " gives " +
                     std::to_string(data.train.size()) + " training rows: every step would repeat rows\nHINT: "
                     "lower train.grad_accum or train.micro_batch");
  check_token_ids(cfg, data, tok);
  return g;
}

OffloadRates with_layer_forward_rate(const Qwen2Model& model, const Config& cfg, OffloadRates rates) {
  const auto dev = model.device();
  const auto& mc = model.config();
  const int64_t b = cfg.train.micro_batch, s = cfg.data.max_seq_len;
  // The input is random: the generators' states go back afterwards, so the run's dropout
  // masks are those of a run that did not time anything.
  const std::string streams = save_rng(dev);
  const auto h = at::randn({b, s, int64_t(mc.hidden_size)}, at::TensorOptions().dtype(model.dtype()).device(dev));
  const auto [cos, sin] = rope_tables(mc.head_dim, mc.rope_theta, 0, s, model.dtype(), dev);
  double seconds = 0;
  {
    at::AutoGradMode on(true);  // as in training: the layer keeps what its backward needs
    seconds = time_median(dev, 1, 3, [&] { (void)model.layer_forward(0, h, cos, sin); });
  }
  load_rng(streams, dev);
  rates.flops_per_s = layer_forward_flops(mc, cfg) / seconds;
  return rates;
}

Run::Run(Config& cfg, const ProcessGroup& pg, const FaultPlan& faults)
    : device(prepare_device(cfg, pg)),
      rates(offload_rates(cfg, device, pg)),
      memory(check_memory(cfg, device, pg, rates)),
      tok(Tokenizer::load(cfg.model.path)),
      data(load_data(cfg, tok, pg, faults)),
      global_batch(checked_global_batch(cfg, data, tok, pg.world)),
      plan(make_plan(cfg, data, global_batch, pg.world)),
      model(rank_model(cfg, device, pg)),
      optimizer(model.lora().flat(), adamw_config(cfg.train)),
      comm(make_communicator(cfg.dist.backend, device)),
      id{model_config_hash(cfg.model.path), model_weights_fingerprint(cfg.model.path), data.fingerprint, global_batch,
         comm->name(), data.rows_fingerprint} {
  if (rates.known()) {
    // The plan again, priced with this model's own layer instead of the product alone.
    const double product = rates.flops_per_s;
    rates = broadcast_rates(with_layer_forward_rate(model, cfg, rates));
    memory = estimate_training_memory(model.config(), cfg, LayerPath::fused, rates);
    log::info("train.offload = auto: a layer's forward at ", cfg.train.micro_batch, " x ", cfg.data.max_seq_len,
              " tokens runs at ", rates.flops_per_s / 1e12, " TFLOP/s (the product alone ", product / 1e12,
              "): the backward's plan for the ", model.config().num_hidden_layers, " layers: ",
              memory.plan.describe(model.config().num_hidden_layers), "; estimate ", memory.describe(), ", about ",
              memory.host / 1e9, " GB of page-locked host memory per rank");
  }
  log::info("model ", cfg.model.path, " on ", device.str(), " (", to_string(cfg.model.dtype), ", base ",
            to_string(cfg.quant.mode), "), ", model.lora().flat().numel(), " LoRA parameters; ", pg.world,
            " rank(s), gradients over ", comm->name(), "; global batch ", global_batch, " rows = ",
            cfg.train.micro_batch, " x ", cfg.train.grad_accum, " x ", pg.world);
}

}  // namespace r1dist
