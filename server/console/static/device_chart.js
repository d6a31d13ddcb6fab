// The device page's status chart: battery, free storage and time online per hour (Apache ECharts). The same
// figures are in the table under it, for screen readers and for printing.
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("status-chart");
  const data = document.getElementById("status-data");
  if (!box || !data || typeof echarts === "undefined") return;
  const d = JSON.parse(data.textContent);
  const names = JSON.parse(box.dataset.labels);
  const hours = d.hours.map((h) => h.slice(5, 16).replace("T", " "));
  const chart = echarts.init(box, null, { renderer: "svg" });
  chart.setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 50, right: 60, top: 40, bottom: 30 },
    xAxis: { type: "category", data: hours },
    yAxis: [{ type: "value", min: 0, max: 100, name: "%" }, { type: "value", name: "MB" }],
    series: [
      { name: names.battery, type: "line", data: d.battery, connectNulls: false, showSymbol: d.hours.length < 50 },
      { name: names.online, type: "bar", data: d.online, itemStyle: { opacity: 0.35 } },
      { name: names.storage, type: "line", yAxisIndex: 1, data: d.storage, showSymbol: d.hours.length < 50 },
    ],
  });
  window.addEventListener("resize", () => chart.resize());
});
