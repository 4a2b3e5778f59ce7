#pragma once
// Turning a batch of requests into one module input, and the batch's output back into each
// request's rows. Internal to the BatchQueue.

#include <cstdint>
#include <memory>
#include <vector>

#include "serve/request_state.h"

namespace streampool::detail {

// What a worker took from a lane: requests in order, and the batch's layout.
struct BatchPlan {
  std::vector<std::shared_ptr<RequestState>> reqs;
  std::vector<std::int64_t> offsets;  // first row of each request in the batch
  std::int64_t rows = 0;
  std::int64_t len = 0;         // the batch's length along seq_dim (the longest request's), 0: none
  bool mask = false;            // the batch carries a key_padding_mask
  bool types = false;           // the batch carries token_type_ids
  bool host = true;             // the requests' tensors are on the host
};

// Host gather: writes the batch's x (rows, [len,] inner...) with zero padding along dimension 1
// (seq_dim 1; with another seq_dim every request of the batch has the same length), the mask
// (rows, len) and the token types (rows, len) into the given buffers (mask / types may be null
// when the plan has none). Request tensors must be host-resident, contiguous and ready.
void gather_host(const BatchPlan& plan, std::int64_t seq_dim, void* x, std::uint8_t* mask, std::int64_t* types);

// The mask alone (the device gather builds x on the device but the mask on the host).
void gather_mask(const BatchPlan& plan, std::uint8_t* mask);

// x's shape for the batch: the first request's with rows and (seq_dim) len substituted.
Shape batch_shape(const BatchPlan& plan, std::int64_t seq_dim);


}  // namespace streampool::detail
