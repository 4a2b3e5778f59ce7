// The HTTP/1.1 front end (http_server.h), on Boost.Beast.

#include "server/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <condition_variable>
#include <future>
#include <iostream>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

namespace streampool::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Note [One io_context per I/O thread]
// Each I/O thread runs its own io_context and owns the connections accepted onto it, round
// robin: a connection's handlers then run on one thread in order without a strand, and the
// threads share no handler queue. One io_context run by N threads serializes every handler,
// every completion posted by the BatchQueue and every epoll wake-up on its one scheduler lock;
// on a 16-core H200 machine twice the I/O threads then gave no more requests per second (mlp
// over HTTP at 256 connections: 43,744 with 8 threads, 43,134 with 16; 120,439 with 8 after this
// change, docs/results/2026-12-02-h200-serve-python-soak/).
struct HttpServer::Impl {
  using WorkGuard = net::executor_work_guard<net::io_context::executor_type>;
  InferenceServer& core;
  HttpOptions options;
  std::vector<std::unique_ptr<net::io_context>> iocs;  // one per I/O thread; iocs[0] also accepts
  // Keep the I/O threads running while every connection waits for a BatchQueue result (no
  // socket operation pending): without them run() would return and the results posted later
  // would never be written.
  std::vector<WorkGuard> works;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::size_t next_ioc = 0;  // the next connection's io_context; only the accepting handler uses it
  std::atomic<std::size_t> connections{0};
  std::atomic<std::int64_t> in_flight{0};  // requests received whose response is not written yet
  std::atomic<std::uint64_t> accepted{0}, received{0}, answered{0};
  std::atomic<bool> stopping{false};
  std::mutex drain_mu;  // with drain_cv: waits for in_flight to reach 0
  std::condition_variable drain_cv;
  std::once_flag stopped;
  unsigned short bound_port = 0;

  static std::vector<std::unique_ptr<net::io_context>> make_iocs(int threads) {
    std::vector<std::unique_ptr<net::io_context>> v;
    for (int i = 0; i < std::max(1, threads); ++i) v.push_back(std::make_unique<net::io_context>(1));
    return v;
  }
  Impl(InferenceServer& c, const HttpOptions& o) : core(c), options(o), iocs(make_iocs(o.threads)), acceptor(*iocs[0]) {
    for (auto& ioc : iocs) works.push_back(net::make_work_guard(*ioc));
  }
  bool stopped_running() const { return iocs[0]->stopped(); }

  void request_done() {
    if (in_flight.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(drain_mu);
      drain_cv.notify_all();
    }
  }
  void accept();
};

namespace {

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

std::vector<std::string_view> split_path(std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < target.size()) {
    if (target[i] == '/') {
      ++i;
      continue;
    }
    std::size_t j = target.find('/', i);
    if (j == std::string_view::npos) j = target.size();
    parts.push_back(target.substr(i, j - i));
    i = j;
  }
  return parts;
}

// A header holding a decimal count (Inference-Header-Content-Length, Inference-Timeout), or
// none where the request lacks it; anything else is the client's error.
std::optional<std::uint64_t> count_header(const Request& req, std::string_view name, std::string_view what) {
  auto h = req.find(beast::string_view(name.data(), name.size()));
  if (h == req.end()) return std::nullopt;
  const std::string_view v(h->value().data(), h->value().size());
  std::uint64_t n = 0;
  auto [p, err] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (err != std::errc() || p != v.data() + v.size() || v.empty()) {
    throw InvalidArgument(std::string(name) + " is not " + std::string(what) + ": '" + std::string(v) + "'");
  }
  return n;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& srv) : stream_(std::move(socket)), srv_(srv) {}
  ~Session() { srv_.connections.fetch_sub(1); }

  net::any_io_executor executor() { return stream_.get_executor(); }

  void start(bool over_limit) {
    if (over_limit) {
      counted_ = false;
      reply(http::status::service_unavailable, error_body("too many connections (the server's --max-connections)"),
            "application/json", 11, false);
      return;
    }
    read();
  }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(srv_.options.max_request_bytes);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(srv_.options.timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  // A client that sent "Expect: 100-continue" (curl does for bodies over 1 KB) waits for a 100
  // Continue before the body; without one it would stall a second per request.
  void on_header(beast::error_code ec, std::size_t n) {
    if (ec || parser_->is_done()) return on_read(ec, n);
    const auto& h = parser_->get();
    auto expect = h.find(http::field::expect);
    if (expect != h.end() && beast::iequals(expect->value(), "100-continue")) {
      continue_ = std::make_shared<http::response<http::empty_body>>(http::status::continue_, h.version());
      http::async_write(stream_, *continue_, [self = shared_from_this()](beast::error_code wec, std::size_t) {
        self->continue_.reset();
        if (wec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof || ec == http::error::partial_message) {
      return close();
    }
    if (ec) {
      const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit ||
                           ec == http::error::buffer_overflow;
      counted_ = false;
      reply(too_big ? http::status::payload_too_large : http::status::bad_request,
            error_body(too_big ? "the request is larger than the server's limit (--max-request-bytes " +
                                     std::to_string(srv_.options.max_request_bytes) + ")"
                               : "malformed HTTP request: " + ec.message()),
            "application/json", 11, false);
      return;
    }
    // Counted in flight first, then the stopping flag read (both sequentially consistent):
    // drain(), which runs after stop_accepting() set the flag, either waits for this request or
    // the request is refused here - never received after drain() returned, when stop() would
    // leave it unanswered (seen under ThreadSanitizer: 233 received, 230 answered). A request
    // on a keep-alive connection after SIGTERM closes the connection without a response, as a
    // server closing an idle connection does.
    srv_.in_flight.fetch_add(1);
    if (srv_.stopping.load()) {
      srv_.request_done();
      return close();
    }
    srv_.received.fetch_add(1);
    counted_ = true;
    req_ = parser_->release();
    try {
      route();
    } catch (const std::exception& e) {
      // Anything not mapped by route() is the server's own fault.
      reply(http::status::internal_server_error, error_body(e.what()), "application/json");
    }
  }

  void route() {
    const auto parts = split_path(req_.target());
    const auto method = req_.method();
    auto is = [&](std::initializer_list<std::string_view> p) {
      return parts.size() == p.size() && std::equal(parts.begin(), parts.end(), p.begin());
    };
    if (method == http::verb::get && is({"v2", "health", "live"})) return reply(http::status::ok, "", "");
    if (method == http::verb::get && is({"v2", "health", "ready"})) {
      return reply(srv_.core.ready() ? http::status::ok : http::status::service_unavailable, "", "");
    }
    if (method == http::verb::get && is({"v2"})) {
      return reply(http::status::ok, srv_.core.server_metadata(), "application/json");
    }
    if (method == http::verb::get && is({"metrics"})) {
      return reply(http::status::ok, srv_.core.metrics_text(), "text/plain; version=0.0.4");
    }
    if (parts.size() >= 3 && parts[0] == "v2" && parts[1] == "models") {
      // /v2/models/{name}[/versions/{version}][/ready|/infer]
      std::string_view name = parts[2], version, action;
      std::size_t i = 3;
      if (parts.size() >= 5 && parts[3] == "versions") {
        version = parts[4];
        i = 5;
      }
      if (parts.size() == i + 1) action = parts[i];
      else if (parts.size() != i) return not_found();
      const Model* model = nullptr;
      try {
        model = &srv_.core.model(name, version);
      } catch (const NotFoundError& e) {
        return reply(http::status::not_found, error_body(e.what()), "application/json");
      }
      if (action.empty() && method == http::verb::get) {
        return reply(http::status::ok, srv_.core.model_metadata(*model), "application/json");
      }
      if (action == "ready" && method == http::verb::get) {
        return reply(srv_.core.ready() ? http::status::ok : http::status::service_unavailable, "", "");
      }
      if (action == "infer" && method == http::verb::post) return infer(*model);
      if (action.empty() || action == "ready" || action == "infer") {
        return reply(http::status::method_not_allowed, error_body("method not allowed here"), "application/json");
      }
    }
    return not_found();
  }

  void not_found() {
    reply(http::status::not_found, error_body("no such endpoint: " + std::string(req_.target())), "application/json");
  }

  static http::status status_of(const std::exception& e) {
    if (dynamic_cast<const NotFoundError*>(&e)) return http::status::not_found;
    if (dynamic_cast<const QueueFullError*>(&e) || dynamic_cast<const QueueClosedError*>(&e)) {
      return http::status::service_unavailable;
    }
    if (dynamic_cast<const TimeoutError*>(&e)) return http::status::gateway_timeout;
    if (dynamic_cast<const InvalidArgument*>(&e) || dynamic_cast<const FormatError*>(&e)) {
      return http::status::bad_request;
    }
    return http::status::internal_server_error;
  }

  void infer(const Model& model) {
    try {
      const auto json_length = count_header(req_, "Inference-Header-Content-Length", "a byte count");
      // The deadline as a header too, for proxies and clients that cannot edit the body; where
      // both are given the nearer one holds.
      const auto timeout = count_header(req_, "Inference-Timeout", "a timeout in microseconds");
      if (timeout && *timeout > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw InvalidArgument("Inference-Timeout is too large: " + std::to_string(*timeout));
      }
      request_ = parse_infer_request(req_.body(), json_length ? std::optional<std::size_t>(*json_length) : std::nullopt);
      if (timeout && *timeout > 0) {  // 0: none, as for the parameter
        const auto t = static_cast<std::int64_t>(*timeout);
        auto& have = request_.timeout_us;
        have = have && *have > 0 ? std::min(*have, t) : t;
      }
    } catch (const std::exception& e) {
      model.failure.fetch_add(1, std::memory_order_relaxed);
      return reply(status_of(e), error_body(e.what()), "application/json");
    }
    try {
      model_ = &model;
      future_ = srv_.core.submit(model, request_);  // counts its own failures
    } catch (const std::exception& e) {
      return reply(status_of(e), error_body(e.what()), "application/json");
    }
    req_.body().clear();
    req_.body().shrink_to_fit();
    // The queue's completer thread only posts back here: serializing happens on an I/O thread.
    future_.on_ready([self = shared_from_this()] {
      net::post(self->stream_.get_executor(), [self] { self->finish_infer(); });
    });
  }

  void finish_infer() {
    try {
      const InferResponse r = srv_.core.respond(*model_, request_, future_);
      std::optional<std::size_t> json_length;
      std::string body = write_infer_response(r, &json_length);
      future_ = BatchFuture();
      request_ = InferRequest();
      Response res{http::status::ok, req_.version()};
      res.set(http::field::server, "streampool");
      if (json_length) {
        res.set("Inference-Header-Content-Length", std::to_string(*json_length));
        res.set(http::field::content_type, "application/octet-stream");
      } else {
        res.set(http::field::content_type, "application/json");
      }
      res.body() = std::move(body);
      send(std::move(res), true);
    } catch (const std::exception& e) {
      future_ = BatchFuture();
      reply(status_of(e), error_body(e.what()), "application/json");
    }
  }

  void reply(http::status status, std::string body, const char* type, unsigned version = 0, bool keep = true) {
    Response res{status, version ? version : req_.version()};
    res.set(http::field::server, "streampool");
    if (*type) res.set(http::field::content_type, type);
    res.body() = std::move(body);
    send(std::move(res), keep);
  }

  void send(Response res, bool keep) {
    keep_ = keep && req_.keep_alive() && !srv_.stopping.load();
    res.keep_alive(keep_);
    res.prepare_payload();
    res_ = std::move(res);
    stream_.expires_after(srv_.options.timeout);
    http::async_write(stream_, res_, beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (counted_) {
      counted_ = false;
      if (!ec) srv_.answered.fetch_add(1);
      srv_.request_done();
    }
    if (ec || !keep_) return close();
    res_ = {};
    read();
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& srv_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request req_;
  Response res_;
  std::shared_ptr<http::response<http::empty_body>> continue_;  // the 100 Continue being written
  bool keep_ = true;
  bool counted_ = false;  // this request is in in_flight
  // The infer request waiting for its future (one per connection at a time: HTTP/1.1).
  InferRequest request_;
  const Model* model_ = nullptr;
  BatchFuture future_;
};

}  // namespace

void HttpServer::Impl::accept() {
  net::io_context& target = *iocs[next_ioc++ % iocs.size()];
  acceptor.async_accept(target, [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      // Out of descriptors and the like: keep accepting after a pause, never spin.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return accept();
    }
    accepted.fetch_add(1);
    const bool over = connections.fetch_add(1) >= options.max_connections;
    auto session = std::make_shared<Session>(std::move(socket), *this);
    // Started on its own I/O thread, like every later handler of the connection.
    net::post(session->executor(), [session, over] { session->start(over); });
    accept();
  });
}

HttpServer::HttpServer(InferenceServer& server, const HttpOptions& options)
    : impl_(std::make_shared<Impl>(server, options)) {
  Impl& s = *impl_;
  try {
    const auto addr = net::ip::make_address(options.address);
    tcp::endpoint ep(addr, options.port);
    s.acceptor.open(ep.protocol());
    s.acceptor.set_option(net::socket_base::reuse_address(true));
    s.acceptor.bind(ep);
    s.acceptor.listen(net::socket_base::max_listen_connections);
    s.bound_port = s.acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw ConfigError("streampool serve: cannot listen on " + options.address + ":" + std::to_string(options.port) +
                      ": " + e.code().message());
  }
  s.accept();
  for (auto& ioc : s.iocs) s.threads.emplace_back([&ioc = *ioc] { ioc.run(); });
}

HttpServer::~HttpServer() { stop(); }

unsigned short HttpServer::port() const { return impl_->bound_port; }

HttpStats HttpServer::stats() const {
  return {impl_->accepted.load(), impl_->received.load(), impl_->answered.load(), impl_->in_flight.load()};
}

void HttpServer::stop_accepting() {
  Impl& s = *impl_;
  s.stopping.store(true);
  if (s.stopped_running()) {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    return;
  }
  std::promise<void> done;
  net::post(s.acceptor.get_executor(), [&] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    done.set_value();
  });
  done.get_future().wait();
}

bool HttpServer::drain(std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  std::unique_lock<std::mutex> lock(s.drain_mu);
  return s.drain_cv.wait_for(lock, timeout, [&] { return s.in_flight.load() <= 0; });
}

void HttpServer::stop() {
  Impl& s = *impl_;
  std::call_once(s.stopped, [&] {
    if (!s.threads.empty() && !s.stopped_running()) stop_accepting();
    for (auto& ioc : s.iocs) ioc->stop();
    for (auto& t : s.threads) t.join();
    // The queues' callbacks post into the io_contexts: close them while they still exist (what
    // they post then is destroyed with them, unrun).
    s.core.close();
  });
}

}  // namespace streampool::server
