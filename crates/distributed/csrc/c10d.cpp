// A C layer over PyTorch's c10d for the Rust side (src/group.rs): a TCPStore rendezvous, a process group on the
// Gloo backend (CPU tensors, USE_C10D_GLOO) or the NCCL backend (CUDA tensors, USE_C10D_NCCL), and the collectives
// training needs. Both backends derive from c10d::Backend, so the collectives are one code. Tensors cross as
// `at::Tensor*` (what tch's `C_tensor` is). Every entry point catches C++ exceptions and returns them as a malloc'd
// message the caller frees with pgrs_c10d_free_error.
// Follows PyTorch's test/cpp/c10d/example/allreduce.cpp and torch/csrc/distributed/c10d/ProcessGroup{Gloo,NCCL}.hpp.
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

struct pgrs_c10d_group {
  c10::intrusive_ptr<c10d::Backend> pg;
};

namespace {
// The backend numbers of pgrs_c10d_new (src/group.rs `Backend`).
constexpr int kGloo = 0;
constexpr int kNccl = 1;

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
  } catch (const c10::Error& e) {
    *err = copy_message(e.what_without_backtrace());  // what() appends a C++ backtrace of every frame
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception in c10d");
  }
  return 1;
}

// Waits for a collective. For Gloo that blocks until it is done. For NCCL (WorkNCCL::wait without a timeout) it
// makes the current CUDA stream wait for the NCCL stream: the result is there for whatever runs next on the current
// stream, the host does not block (barrier excepted), and a collective that never completes is ended by
// ProcessGroupNCCL's watchdog after the group's timeout.
void wait(const c10::intrusive_ptr<c10d::Work>& w) { w->wait(); }
}  // namespace

extern "C" {

void pgrs_c10d_free_error(char* err) { std::free(err); }

// Rendezvous on MASTER_ADDR:MASTER_PORT (rank 0 serves the store) and a group on `backend`: kGloo (CPU tensors) or
// kNccl (CUDA tensors on device `cuda_device`, made this thread's current CUDA device).
pgrs_c10d_group* pgrs_c10d_new(const char* addr, int port, int rank, int world, long long timeout_ms, int backend,
                               int cuda_device, char** err) {
  pgrs_c10d_group* out = nullptr;
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
#ifndef USE_C10D_NCCL
    if (backend == kNccl) throw std::runtime_error("this build has no NCCL backend (built without USE_C10D_NCCL)");
#endif
#ifndef USE_C10D_GLOO
    if (backend == kGloo) throw std::runtime_error("this build has no Gloo backend (built without USE_C10D_GLOO)");
#endif
    if (backend != kGloo && backend != kNccl) throw std::runtime_error("unknown backend " + std::to_string(backend));
#ifdef USE_C10D_NCCL
    if (backend == kNccl) c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
#endif
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), o);
    c10::intrusive_ptr<c10d::Backend> pg;
#ifdef USE_C10D_GLOO
    if (backend == kGloo) {
      auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    }
#endif
#ifdef USE_C10D_NCCL
    if (backend == kNccl) {
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
      // As torch.distributed.init_process_group(device_id=...): bind the device (barrier uses it) and create the
      // communicator now, so a missing peer shows at rendezvous rather than in the first collective.
      at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_device));
      nccl->setBoundDeviceId(device);
      nccl->eagerConnectSingleDevice(device);
      pg = nccl;
    }
#endif
    out = new pgrs_c10d_group{pg};
  });
  return out;
}

// Shuts the backend down (NCCL: destroys its communicators, as destroy_process_group does) and frees the group.
void pgrs_c10d_free(pgrs_c10d_group* g) {
  if (g == nullptr) return;
  try {
    g->pg->shutdown();
  } catch (...) {
    // nothing to report to: the group is going away either way
  }
  delete g;
}

// In-place sum over ranks of each tensor (one collective per tensor, all issued before waiting).
int pgrs_c10d_all_reduce_sum(pgrs_c10d_group* g, at::Tensor** tensors, int n, char** err) {
  return guarded(err, [&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (int i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*tensors[i]};
      works.push_back(g->pg->allreduce(one));
    }
    for (auto& w : works) wait(w);
  });
}

int pgrs_c10d_broadcast(pgrs_c10d_group* g, at::Tensor* t, int root, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> one{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait(g->pg->broadcast(one, o));
  });
}

int pgrs_c10d_barrier(pgrs_c10d_group* g, char** err) {
  return guarded(err, [&] { wait(g->pg->barrier()); });
}

// Gathers `input` (same shape on every rank) into `outputs[0..world)`, which must be allocated alike.
int pgrs_c10d_all_gather(pgrs_c10d_group* g, at::Tensor* input, at::Tensor** outputs, int world, char** err) {
  return guarded(err, [&] {
    std::vector<std::vector<at::Tensor>> out(1);
    for (int i = 0; i < world; i++) out[0].push_back(*outputs[i]);
    std::vector<at::Tensor> in{*input};
    wait(g->pg->allgather(out, in));
  });
}

}  // extern "C"
