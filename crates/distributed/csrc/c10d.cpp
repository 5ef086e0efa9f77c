// A C layer over PyTorch's c10d for the Rust side (src/group.rs): a TCPStore rendezvous, a Gloo process group, and
// the collectives training needs. Tensors cross as `at::Tensor*` (what tch's `C_tensor` is). Every entry point
// catches C++ exceptions and returns them as a malloc'd message the caller frees with pgrs_c10d_free_error.
// Follows PyTorch's test/cpp/c10d/example/allreduce.cpp and torch/csrc/distributed/c10d/ProcessGroupGloo.hpp.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

struct pgrs_c10d_group {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

namespace {
char* copy_message(const char* what) {
  size_t n = std::strlen(what) + 1;
  char* out = static_cast<char*>(std::malloc(n));
  if (out != nullptr) std::memcpy(out, what, n);
  return out;
}

template <typename F>
int guarded(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception in c10d");
  }
  return 1;
}
}  // namespace

extern "C" {

void pgrs_c10d_free_error(char* err) { std::free(err); }

// Rendezvous on MASTER_ADDR:MASTER_PORT (rank 0 serves the store) and a Gloo group over the default device.
pgrs_c10d_group* pgrs_c10d_new_gloo(const char* addr, int port, int rank, int world, long long timeout_ms,
                                    char** err) {
  pgrs_c10d_group* out = nullptr;
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), o);
    auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    out = new pgrs_c10d_group{pg};
  });
  return out;
}

void pgrs_c10d_free(pgrs_c10d_group* g) { delete g; }

// In-place sum over ranks of each tensor (one collective per tensor, all issued before waiting).
int pgrs_c10d_all_reduce_sum(pgrs_c10d_group* g, at::Tensor** tensors, int n, char** err) {
  return guarded(err, [&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (int i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*tensors[i]};
      works.push_back(g->pg->allreduce(one));
    }
    for (auto& w : works) w->wait();
  });
}

int pgrs_c10d_broadcast(pgrs_c10d_group* g, at::Tensor* t, int root, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> one{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    g->pg->broadcast(one, o)->wait();
  });
}

int pgrs_c10d_barrier(pgrs_c10d_group* g, char** err) {
  return guarded(err, [&] { g->pg->barrier()->wait(); });
}

// Gathers `input` (same shape on every rank) into `outputs[0..world)`, which must be allocated alike.
int pgrs_c10d_all_gather(pgrs_c10d_group* g, at::Tensor* input, at::Tensor** outputs, int world, char** err) {
  return guarded(err, [&] {
    std::vector<std::vector<at::Tensor>> out(1);
    for (int i = 0; i < world; i++) out[0].push_back(*outputs[i]);
    std::vector<at::Tensor> in{*input};
    g->pg->allgather(out, in)->wait();
  });
}

}  // extern "C"
