// The held-out measurements of a run at one step, spread over the ranks: loss over every
// eval row and KL drift over the first kl_rows of them. Rank r takes rows i with
// i % world == r and packs them (eval/drift.h); the sums travel in one all-reduce. The
// drift rows' loss and drift come from one tuned pass (loss_and_drift), their base pass
// from `base`, which the caller keeps across a run's evaluations (filled by the first).
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/comm/communicator.h"
#include "r1dist/data/dataset.h"
#include "r1dist/eval/drift.h"
#include "r1dist/formats/metrics.h"
#include "r1dist/model/qwen2.h"

namespace r1dist {

struct HeldOutSettings {
  int64_t capacity = 2048;  // tokens per packed sequence (eval/drift.h): data.max_seq_len
  int64_t kl_rows = 8;
};

EvalRecord evaluate_held_out(const Qwen2Model& model, const std::vector<Example>& rows, const HeldOutSettings& s,
                             BaseStates& base, Communicator& comm, int64_t step);

}  // namespace r1dist
