#include "svg_plot.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "streampool/error.h"

namespace streampool::bench {

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                         "#7f7f7f", "#bcbd22"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

std::string fmt(double v) {
  std::ostringstream o;
  if (v >= 1e6) o << v / 1e6 << "M";
  else if (v >= 1e3) o << v / 1e3 << "k";
  else o << v;
  return o.str();
}

void panel(std::ostringstream& svg, double x0, double y0, double w, double h, const std::string& ylabel,
           const std::vector<Series>& series, bool use_rps, int max_threads) {
  double lo = 1e300, hi = 0;
  for (const auto& s : series)
    for (const auto& [t, v] : use_rps ? s.rps : s.p99)
      if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi <= 0) lo = 1, hi = 10;
  double dlo = std::floor(std::log10(lo)), dhi = std::ceil(std::log10(hi));
  if (dhi <= dlo) dhi = dlo + 1;
  const double xmax = std::log2(std::max(max_threads, 2));
  auto X = [&](int t) { return x0 + w * std::log2(static_cast<double>(t)) / xmax; };
  auto Y = [&](double v) { return y0 + h - h * (std::log10(v) - dlo) / (dhi - dlo); };
  svg << "<rect x='" << x0 << "' y='" << y0 << "' width='" << w << "' height='" << h
      << "' fill='none' stroke='#333'/>\n";
  for (double d = dlo; d <= dhi; ++d) {
    for (int m = 1; m < 10; ++m) {
      double v = std::pow(10, d) * m;
      if (std::log10(v) > dhi + 1e-9) break;
      svg << "<line x1='" << x0 << "' x2='" << x0 + w << "' y1='" << Y(v) << "' y2='" << Y(v) << "' stroke='"
          << (m == 1 ? "#ccc" : "#eee") << "'/>\n";
      if (m == 1 || m == 2 || m == 5) {
        svg << "<text x='" << x0 - 6 << "' y='" << Y(v) + 4 << "' font-size='11' text-anchor='end'>" << fmt(v)
            << "</text>\n";
      }
    }
  }
  for (int t = 1; t <= max_threads; t *= 2) {
    svg << "<line x1='" << X(t) << "' x2='" << X(t) << "' y1='" << y0 << "' y2='" << y0 + h << "' stroke='#eee'/>\n";
    svg << "<text x='" << X(t) << "' y='" << y0 + h + 16 << "' font-size='11' text-anchor='middle'>" << t << "</text>\n";
  }
  if (max_threads == 31) {
    svg << "<text x='" << X(31) << "' y='" << y0 + h + 16 << "' font-size='11' text-anchor='middle'>31</text>\n";
  }
  svg << "<text x='" << x0 + w / 2 << "' y='" << y0 + h + 34 << "' font-size='12' text-anchor='middle'>threads</text>\n";
  svg << "<text transform='translate(" << x0 - 52 << "," << y0 + h / 2 << ") rotate(-90)' font-size='12' "
      << "text-anchor='middle'>" << esc(ylabel) << "</text>\n";
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& pts = use_rps ? series[i].rps : series[i].p99;
    std::ostringstream path;
    bool first = true;
    for (const auto& [t, v] : pts) {
      if (v <= 0) continue;
      path << (first ? "M" : "L") << X(t) << "," << Y(v) << " ";
      first = false;
    }
    const char* color = kColors[i % 10];
    svg << "<path d='" << path.str() << "' fill='none' stroke='" << color << "' stroke-width='2'"
        << (series[i].dashed ? " stroke-dasharray='6,4'" : "") << "/>\n";
    for (const auto& [t, v] : pts)
      if (v > 0) svg << "<circle cx='" << X(t) << "' cy='" << Y(v) << "' r='3' fill='" << color << "'/>\n";
  }
}

}  // namespace

void write_svg(const std::string& path, const std::string& title, const std::vector<Series>& series) {
  int max_threads = 1;
  for (const auto& s : series)
    for (const auto& [t, v] : s.rps) max_threads = std::max(max_threads, t);
  const double pw = 420, ph = 300, left = 80, top = 50, gap = 110;
  const double legend_top = top + ph + 60;
  const double height = legend_top + 20 + 18 * static_cast<double>(series.size());
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + 2 * pw + gap + 40 << "' height='" << height
      << "' font-family='sans-serif'>\n<rect width='100%' height='100%' fill='white'/>\n";
  svg << "<text x='" << left << "' y='24' font-size='15' font-weight='bold'>" << esc(title) << "</text>\n";
  svg << "<text x='" << left + pw / 2 << "' y='" << top - 8 << "' font-size='13' text-anchor='middle'>Throughput</text>\n";
  svg << "<text x='" << left + pw + gap + pw / 2 << "' y='" << top - 8
      << "' font-size='13' text-anchor='middle'>p99 latency</text>\n";
  panel(svg, left, top, pw, ph, "requests / s (log)", series, true, max_threads);
  panel(svg, left + pw + gap, top, pw, ph, "p99 latency, ms (log)", series, false, max_threads);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const double y = legend_top + 18 * static_cast<double>(i);
    svg << "<line x1='" << left << "' x2='" << left + 30 << "' y1='" << y << "' y2='" << y << "' stroke='"
        << kColors[i % 10] << "' stroke-width='2'" << (series[i].dashed ? " stroke-dasharray='6,4'" : "") << "/>\n";
    svg << "<text x='" << left + 38 << "' y='" << y + 4 << "' font-size='12'>" << esc(series[i].label) << "</text>\n";
  }
  svg << "</svg>\n";
  std::ofstream out(path);
  if (!out) throw Error("cannot write plot '" + path + "'");
  out << svg.str();
}

}  // namespace streampool::bench
