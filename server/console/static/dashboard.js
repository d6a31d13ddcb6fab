// The attendance dashboard's charts (Apache ECharts, served from the console's own static folder). The figures come
// from the page's JSON block, the same values as the tables under each chart, which stay the accessible version.
(function () {
  "use strict";
  function pct(v) { return v === null || v === undefined ? null : Math.round(v * 1000) / 10; }
  function draw(id, option) {
    var el = document.getElementById(id);
    if (!el || !window.echarts) { return; }
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(Object.assign({ animation: false, grid: { left: 48, right: 72, top: 32, bottom: 64 } }, option));
    window.addEventListener("resize", function () { chart.resize(); });
    el.dataset.drawn = "1";
  }
  function start() {
    var block = document.getElementById("chart-data");
    if (!block) { return; }
    var data = JSON.parse(block.textContent);
    var names = data.names, target = pct(data.target);
    draw("chart-rate", {
      legend: { data: [names.rate, names.target] },
      xAxis: { type: "category", data: data.bars.labels, axisLabel: { interval: 0, rotate: data.bars.labels.length > 8 ? 30 : 0 } },
      yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
      series: [{ name: names.rate, type: "bar", data: data.bars.values.map(pct),
                 itemStyle: { color: function (p) { return p.value !== null && p.value >= target ? "#1d5e20" : "#8b1a1a"; } },
                 label: { show: true, position: "top", formatter: "{c}%" },
                 markLine: { symbol: "none", data: [{ yAxis: target, name: names.target }],
                             label: { formatter: names.target + " {c}%" }, lineStyle: { color: "#7a4b00", type: "dashed" } } },
               { name: names.target, type: "line", data: [], itemStyle: { color: "#7a4b00" } }]
    });
    if (data.trend.labels.length) {
      draw("chart-trend", {
        xAxis: { type: "category", data: data.trend.labels },
        yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
        series: [{ name: names.county, type: "line", data: data.trend.county.map(pct), label: { show: true, formatter: "{c}%" },
                   markLine: { symbol: "none", data: [{ yAxis: target }], lineStyle: { color: "#7a4b00", type: "dashed" } } }]
      });
    }
    draw("chart-broadcast", {
      xAxis: { type: "category", data: data.broadcast.labels, axisLabel: { interval: 0, rotate: data.broadcast.labels.length > 8 ? 30 : 0 } },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: names.days, type: "bar", data: data.broadcast.values, itemStyle: { color: "#0b4f8a" }, label: { show: true, position: "top" } }]
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
