// The Open Inference Protocol over gRPC (grpc_server.h).

#include "server/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <cstring>
#include <mutex>

#include "open_inference.grpc.pb.h"
#include "streampool/version.h"

namespace streampool::server {
namespace {

using inference::GRPCInferenceService;

grpc::Status status_of(const std::exception& e) {
  const std::string what = e.what();
  if (dynamic_cast<const NotFoundError*>(&e)) return {grpc::StatusCode::NOT_FOUND, what};
  if (dynamic_cast<const QueueFullError*>(&e)) return {grpc::StatusCode::RESOURCE_EXHAUSTED, what};
  if (dynamic_cast<const QueueClosedError*>(&e)) return {grpc::StatusCode::UNAVAILABLE, what};
  if (dynamic_cast<const TimeoutError*>(&e)) return {grpc::StatusCode::DEADLINE_EXCEEDED, what};
  if (dynamic_cast<const InvalidArgument*>(&e) || dynamic_cast<const FormatError*>(&e)) {
    return {grpc::StatusCode::INVALID_ARGUMENT, what};
  }
  return {grpc::StatusCode::INTERNAL, what};
}

[[noreturn]] void bad(const std::string& what) { throw InvalidArgument("infer request: " + what); }

template <typename T>
void append(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// The typed contents of one input as raw bytes of `dtype`.
std::string typed_bytes(const inference::InferTensorContents& c, DType dtype, const std::string& who) {
  std::string out;
  switch (dtype) {
    case DType::float32:
      for (float f : c.fp32_contents()) append(out, f);
      return out;
    case DType::int64:
      for (std::int64_t v : c.int64_contents()) append(out, v);
      return out;
    case DType::int32:
      for (std::int32_t v : c.int_contents()) append(out, v);
      return out;
    case DType::uint8:
      for (std::uint32_t v : c.uint_contents()) {
        if (v > 255) bad(who + ": " + std::to_string(v) + " does not fit UINT8");
        append(out, static_cast<std::uint8_t>(v));
      }
      return out;
    case DType::boolean:
      for (bool v : c.bool_contents()) append(out, static_cast<std::uint8_t>(v ? 1 : 0));
      return out;
    case DType::float16:
    case DType::bfloat16:
      bad(who + ": FP16 and BF16 data must come as raw_input_contents");
  }
  bad(who + ": unsupported datatype");
}

InferRequest to_request(const inference::ModelInferRequest& r) {
  InferRequest req;
  req.id = r.id();
  for (const auto& [key, p] : r.parameters()) {
    if (key == "timeout" && p.parameter_choice_case() == inference::InferParameter::kInt64Param) {
      if (p.int64_param() < 0) bad("parameter \"timeout\" must not be negative");
      req.timeout_us = p.int64_param();
    } else if (key == "priority" && p.parameter_choice_case() == inference::InferParameter::kInt64Param) {
      req.priority = static_cast<int>(std::clamp<std::int64_t>(p.int64_param(), INT32_MIN, INT32_MAX));
    }
  }
  if (r.inputs().empty()) bad("no inputs");
  const bool raw = r.raw_input_contents_size() > 0;
  if (raw && r.raw_input_contents_size() != r.inputs_size()) {
    bad(std::to_string(r.raw_input_contents_size()) + " raw_input_contents for " + std::to_string(r.inputs_size()) +
        " inputs");
  }
  for (int i = 0; i < r.inputs_size(); ++i) {
    const auto& t = r.inputs(i);
    const std::string who = "input " + std::to_string(i) + " ('" + t.name() + "')";
    RequestTensor rt;
    rt.name = t.name();
    for (const RequestTensor& other : req.inputs) {
      if (other.name == rt.name) bad(who + " is given twice");
    }
    const auto dt = dtype_from_protocol(t.datatype());
    if (!dt) bad(who + ": datatype \"" + t.datatype() + "\" is not supported (FP32, FP16, BF16, INT64, INT32, UINT8, BOOL)");
    rt.dtype = *dt;
    if (t.shape_size() > 16) bad(who + ": more than 16 dimensions");
    std::size_t count = 1;
    for (std::int64_t d : t.shape()) {
      if (d < 0) bad(who + ": shape has the negative dimension " + std::to_string(d));
      const auto u = static_cast<std::size_t>(d);
      if (u != 0 && count > (std::size_t{1} << 28) / u) bad(who + ": shape has too many elements");
      count *= u;
      rt.shape.push_back(d);
    }
    const std::size_t bytes = count * dtype_size(rt.dtype);
    rt.data = raw ? r.raw_input_contents(i) : typed_bytes(t.contents(), rt.dtype, who);
    if (rt.data.size() != bytes) {
      bad(who + ": " + std::to_string(rt.data.size()) + " bytes of data, shape and datatype make " +
          std::to_string(bytes));
    }
    req.inputs.push_back(std::move(rt));
  }
  for (const auto& o : r.outputs()) req.outputs.push_back({o.name(), true});
  return req;
}

class Service final : public GRPCInferenceService::CallbackService {
 public:
  explicit Service(InferenceServer& core) : core_(core) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx, const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* res) override {
    res->set_live(true);
    return done(ctx, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx, const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* res) override {
    res->set_ready(core_.ready());
    return done(ctx, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx, const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* res) override {
    try {
      (void)core_.model(req->name(), req->version());
      res->set_ready(core_.ready());
      return done(ctx, grpc::Status::OK);
    } catch (const std::exception& e) {
      return done(ctx, status_of(e));
    }
  }

  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
                                           inference::ServerMetadataResponse* res) override {
    res->set_name("streampool");
    res->set_version(STREAMPOOL_VERSION);
    res->add_extensions("model_repository_metadata");
    return done(ctx, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* res) override {
    try {
      const Model& m = core_.model(req->name(), req->version());
      res->set_name(m.config.name);
      res->add_versions(m.config.version);
      res->set_platform("streampool_" + m.config.module);
      for (const auto* list : {&m.inputs, &m.outputs}) {
        for (const TensorMetadata& t : *list) {
          auto* o = list == &m.inputs ? res->add_inputs() : res->add_outputs();
          o->set_name(t.name);
          o->set_datatype(protocol_datatype(t.dtype));
          for (std::int64_t d : t.shape) o->add_shape(d);
        }
      }
      return done(ctx, grpc::Status::OK);
    } catch (const std::exception& e) {
      return done(ctx, status_of(e));
    }
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx, const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* res) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    const Model* model = nullptr;
    // The request and its future, kept by the callback; the callback drops the future at the end
    // (the request's state holds the callback: no cycle may outlive the call).
    struct Call {
      InferRequest request;
      BatchFuture future;
    };
    auto call = std::make_shared<Call>();
    try {
      model = &core_.model(req->model_name(), req->has_model_version() ? req->model_version() : std::string());
      try {
        call->request = to_request(*req);
      } catch (...) {
        model->failure.fetch_add(1, std::memory_order_relaxed);
        throw;
      }
      // The client's deadline, if sooner, is the request's deadline in the queue.
      const auto left = ctx->deadline() - std::chrono::system_clock::now();
      if (left < std::chrono::hours(24 * 365)) {
        const auto us = std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(left).count());
        auto& t = call->request.timeout_us;
        if (!t || *t == 0 || *t > us) t = us;
      }
      call->future = core_.submit(*model, call->request);
    } catch (const std::exception& e) {
      reactor->Finish(status_of(e));
      return reactor;
    }
    // On the queue's completer thread: the outputs are copied into the response as raw bytes.
    call->future.on_ready([this, reactor, res, model, call] {
      try {
        const InferResponse r = core_.respond(*model, call->request, call->future);
        res->set_model_name(r.model_name);
        res->set_model_version(r.model_version);
        res->set_id(r.id);
        for (const ResponseTensor& t : r.outputs) {
          auto* o = res->add_outputs();
          o->set_name(t.name);
          o->set_datatype(protocol_datatype(t.dtype));
          for (std::int64_t d : t.shape) o->add_shape(d);
          res->add_raw_output_contents(t.data);
        }
        call->future = BatchFuture();
        reactor->Finish(grpc::Status::OK);
      } catch (const std::exception& e) {
        call->future = BatchFuture();
        reactor->Finish(status_of(e));
      }
    });
    return reactor;
  }

 private:
  static grpc::ServerUnaryReactor* done(grpc::CallbackServerContext* ctx, const grpc::Status& s) {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(s);
    return r;
  }

  InferenceServer& core_;
};

}  // namespace

struct GrpcServer::Impl {
  explicit Impl(InferenceServer& core) : service(core) {}
  Service service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::once_flag down;
};

GrpcServer::GrpcServer(InferenceServer& server, const GrpcOptions& options) : impl_(std::make_unique<Impl>(server)) {
  grpc::ServerBuilder b;
  const std::string where = options.address + ":" + std::to_string(options.port);
  b.AddListeningPort(where, grpc::InsecureServerCredentials(), &impl_->port);
  b.SetMaxReceiveMessageSize(static_cast<int>(std::min<std::size_t>(options.max_request_bytes, INT32_MAX)));
  b.RegisterService(&impl_->service);
  impl_->server = b.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    throw ConfigError("streampool serve: cannot listen for gRPC on " + where);
  }
}

GrpcServer::~GrpcServer() { shutdown(std::chrono::milliseconds(0)); }

unsigned short GrpcServer::port() const { return static_cast<unsigned short>(impl_->port); }

void GrpcServer::shutdown(std::chrono::milliseconds timeout) {
  std::call_once(impl_->down, [&] {
    impl_->server->Shutdown(std::chrono::system_clock::now() + timeout);
    impl_->server->Wait();
  });
}

}  // namespace streampool::server
