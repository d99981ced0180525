// A sweep: many fine-tunes of one experiment described in one TOML file, expanded into one
// full config per point (docs/SWEEPS.md has the format with examples):
//
//   [sweep]
//   config = "v8.toml"       # the config every point starts from (relative to this file)
//   out = "runs/lr-steps"    # point NAME runs in OUT/NAME (default: runs/<file stem>)
//   name = "{model.path}-lr{train.lr}-s{train.steps}"   # optional name template
//   [set]                    # keys set for every point (optional)
//   eval.every_steps = 5
//   [grid]                   # axes: the points are their product, first axis outermost
//   train.lr = [2e-4, 5e-5, 1e-5, 5e-6]
//   train.steps = [30, 60]
//   [[point]]                # explicit points (after the grid's): name, config, keys
//   name = "v1"
//   config = "v1.toml"
//   train.lr = 2e-4
//
// Every point gets output.dir = OUT/NAME and model.name = NAME (unless it sets model.name).
// The evaluations of the untouched models that a report compares with are derived: one
// point `base-<model directory>` with train.steps = 0 per distinct model.path, unless a
// point already evaluates that model (train.steps = 0). Names are made from the swept
// values (sweep_value_label) unless the point or the template gives one.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "r1dist/config/config.h"

namespace r1dist {

struct SweepPoint {
  std::string name;
  bool base = false;          // train.steps = 0: evaluates the untouched model
  bool derived = false;       // a base evaluation the sweep added
  std::string where;          // "FILE:LINE" of the [grid] or [[point]] that made it
  std::string config_file;    // the config it starts from
  std::vector<std::pair<std::string, std::string>> values;  // the swept (or point's) keys, TOML text
  std::vector<std::string> overrides;                       // everything applied, as --set text
  Config cfg;                 // the resolved, validated config
};

struct SweepOptions {
  std::string out;                 // replaces [sweep] out when not empty
  std::vector<std::string> sets;   // section.key=value applied to every point, last
  std::string models;              // when not empty: every model.path becomes MODELS/<its last component>
  std::string data;                // when not empty: every data.path
};

struct Sweep {
  std::string file, out;
  std::vector<std::string> axes;   // [grid] keys in file order
  std::vector<SweepPoint> points;  // the file's points, then the derived base evaluations
};

// The most points one sweep file may hold (grid and [[point]] tables together): each is a
// whole fine-tune, and a grid is refused from its axes' sizes, before it is expanded.
constexpr size_t kMaxSweepPoints = 10000;

// Reads, expands and validates a sweep file (every point's config through load_config).
// Throws UsageError listing every problem, each naming the file, line, point and key.
Sweep read_sweep(const std::string& path, const SweepOptions& opt = {});

// How a swept value appears in a point's name: numbers in their shortest form (5e-06, 30,
// 0.05), model.path as its directory's size suffix ("DeepSeek-R1-Distill-Qwen-14B" -> 14b).
std::string sweep_value_label(const std::string& key, const std::string& toml_value);

// The plan of a sweep in its output root OUT: OUT/configs/NAME.toml (one full config per
// point), OUT/sweep.json (the manifest: points, kinds, configs, output dirs, swept values)
// and OUT/points.tsv (index, kind, name, config, output dir: what the job scripts read; the
// index counts within a kind, as a Slurm array index).
void write_sweep_plan(const Sweep& sweep);

// What `r1dist sweep status` shows of one point.
struct PointStatus {
  std::string name, kind, output_dir;
  std::string state;   // done | running | stopped | failed | interrupted | not started
  std::string detail;  // the reason, the step, the exit code
  int attempts = 0;
};
std::vector<PointStatus> sweep_status(const std::string& out_dir);

}  // namespace r1dist
