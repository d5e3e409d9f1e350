// The directory's HTTP status pages: /status, /relays (in the spirit of Tor's Onionoo details
// documents), /consensus and /metrics (Prometheus text format). Pure functions of the server's state.
#include <chrono>
#include <sstream>

#include "common/crypto/encoding.hpp"
#include "directory/directory_server.hpp"

namespace thor::directory {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; }

std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// "accept 80,443" -> {"accept": ["80", "443"]}, as Onionoo's exit_policy_summary.
json summary_object(const std::string& summary) {
  auto space = summary.find(' ');
  json ports = json::array();
  std::string list = space == std::string::npos ? "" : summary.substr(space + 1);
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) ports.push_back(item);
  return json{{summary.substr(0, space), ports}};
}

json relay_details(const dir::MemberRecord& rec, const dir::Consensus& c) {
  std::uint32_t flags = 0;
  for (const auto& r : c.relays)
    if (r.descriptor.identity == rec.descriptor.identity) flags = r.flags;
  const auto& d = rec.descriptor;
  return json{{"fingerprint", rec.fingerprint},
              {"nickname", d.nickname},
              {"address", d.address.to_string()},
              {"identity", crypto::to_base64(d.identity.view())},
              {"flags", dir::flag_names(flags)},
              {"running", rec.running},
              {"first_seen", dir::format_utc(rec.first_seen_ms / 1000)},
              {"joined", dir::format_utc(rec.joined_ms / 1000)},
              {"last_heartbeat", dir::format_utc(rec.last_heartbeat_ms / 1000)},
              {"published", dir::format_utc(d.published)},
              {"bandwidth", d.bandwidth},
              {"exit_policy", d.exit_policy.to_string()},
              {"exit_policy_summary", summary_object(d.exit_policy.summary())},
              {"version", d.version}};
}

void metric(std::ostringstream& out, const char* name, const char* type, const char* help, std::uint64_t value) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
}

}  // namespace

http::Response DirectoryServer::handle_http(const http::Request& req) {
  if (req.method != "GET" && req.method != "HEAD") {
    auto r = http::error_response(405, "method " + req.method + " not allowed; use GET");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  const std::int64_t now = wall_ms();
  http::Response r;
  if (req.path == "/status") {
    json status{
        {"network", config_.network},
        {"directory_fingerprint", crypto::fingerprint(config_.identity.public_key())},
        {"directory_key", crypto::to_base64(config_.identity.public_key().view())},
        {"version", std::string("thor ") + THOR_VERSION},
        {"time", dir::format_utc(now / 1000)},
        {"uptime_seconds", started_ms_ ? (now - started_ms_) / 1000 : 0},
        {"relays_running", members_.running_count()},
        {"relays_total", members_.relays().size()},
        {"heartbeat_interval_ms", config_.heartbeat_interval_ms},
        {"consensus",
         {{"valid_after", dir::format_utc(consensus_.valid_after)},
          {"fresh_until", dir::format_utc(consensus_.fresh_until)},
          {"valid_until", dir::format_utc(consensus_.valid_until)},
          {"valid", consensus_.valid_after <= now / 1000 + dir::kConsensusClockSkewSeconds &&
                        now / 1000 <= consensus_.valid_until},
          {"relays", consensus_.relays.size()}}}};
    r.body = dump(status);
  } else if (req.path == "/relays") {
    json relays = json::array();
    for (const auto& [id, rec] : members_.relays()) relays.push_back(relay_details(rec, consensus_));
    r.body = dump(json{{"version", "thor-relays-1"},
                       {"relays_published", dir::format_utc(consensus_.valid_after)},
                       {"relays", std::move(relays)}});
  } else if (req.path == "/consensus") {
    ++counters_.consensus_fetches;
    r.body = consensus_body_;
  } else if (req.path == "/metrics") {
    const auto& mc = members_.counters();
    std::ostringstream out;
    metric(out, "thor_directory_relays_running", "gauge", "Relays in the running state.", members_.running_count());
    metric(out, "thor_directory_relays_known", "gauge", "Relays the directory remembers, running or not.",
           members_.relays().size());
    metric(out, "thor_directory_consensus_relays", "gauge", "Relays in the current consensus.", consensus_.relays.size());
    metric(out, "thor_directory_joins_total", "counter", "Joins accepted.", mc.joins);
    metric(out, "thor_directory_joins_refused_total", "counter", "Joins refused (bad signature, proof, fields, endpoint).",
           mc.joins_refused);
    metric(out, "thor_directory_heartbeats_total", "counter", "Heartbeats received from joined relays.", mc.heartbeats);
    metric(out, "thor_directory_heartbeats_missed_total", "counter",
           "Relays marked not running because their heartbeats stopped.", mc.heartbeats_missed);
    metric(out, "thor_directory_disconnects_total", "counter",
           "Relays marked not running because their connection closed.", mc.disconnects);
    metric(out, "thor_directory_consensus_fetches_total", "counter", "Consensus documents served (protocol and HTTP).",
           counters_.consensus_fetches);
    metric(out, "thor_directory_consensus_builds_total", "counter", "Consensus documents built and signed.",
           counters_.consensus_builds);
    metric(out, "thor_directory_protocol_errors_total", "counter", "Directory connections closed for a peer's mistake.",
           counters_.protocol_errors);
    metric(out, "thor_directory_connections", "gauge", "Open directory-protocol connections.", conns_.size());
    metric(out, "thor_directory_uptime_seconds", "gauge", "Seconds since the directory started.",
           static_cast<std::uint64_t>(started_ms_ ? (now - started_ms_) / 1000 : 0));
    out << "# HELP thor_directory_http_requests_total HTTP responses sent, by status code.\n"
        << "# TYPE thor_directory_http_requests_total counter\n";
    // This response is counted after it is built; show it already, so one scrape is self-consistent.
    auto codes = counters_.http_responses;
    ++codes[200];
    for (const auto& [code, n] : codes) out << "thor_directory_http_requests_total{code=\"" << code << "\"} " << n << "\n";
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = out.str();
  } else if (req.path == "/") {
    r.body = dump(json{{"network", config_.network},
                       {"endpoints", json::array({"/status", "/relays", "/consensus", "/metrics"})}});
  } else {
    return http::error_response(404, "no such page; try /status, /relays, /consensus or /metrics");
  }
  return r;
}

}  // namespace thor::directory
