// crabllm console: charts (uPlot), copy buttons, confirmations. No framework.
(function () {
  "use strict";
  var COLORS = ["#2f6fd2", "#d2452f", "#1f8a4c", "#b7791f", "#805ad5", "#0f8b8d",
                "#d53f8c", "#4a5568", "#a0aec0"];

  function fmt(label) {
    return function (u, v) {
      if (v == null) return "—";
      if (label.indexOf("USD") >= 0) return "$" + (v < 1 ? v.toFixed(4) : v.toFixed(2));
      return v >= 1000 ? v.toLocaleString() : String(Math.round(v * 100) / 100);
    };
  }

  function draw(el) {
    var data = JSON.parse(el.getAttribute("data-chart") || "null");
    if (!data || !data.series.length) {
      el.innerHTML = '<div class="empty">No data in this period.</div>';
      return;
    }
    var f = fmt(data.label);
    var opts = {
      width: el.clientWidth || 800,
      height: 300,
      scales: { x: { time: true } },
      // Axis times in UTC, as every table on the console.
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      axes: [
        { stroke: "#6b7382", grid: { stroke: "#edf0f4" } },
        { stroke: "#6b7382", grid: { stroke: "#edf0f4" }, size: 70,
          label: data.label, values: function (u, vals) { return vals.map(function (v) { return f(u, v); }); } }
      ],
      series: [{}].concat(data.series.map(function (s, i) {
        var c = COLORS[i % COLORS.length];
        return { label: s.name, stroke: c, fill: c + "14", width: 2, value: f, points: { show: false } };
      }))
    };
    var cols = [data.x].concat(data.series.map(function (s) { return s.values; }));
    el.innerHTML = "";
    var plot = new uPlot(opts, cols, el);
    window.addEventListener("resize", function () {
      plot.setSize({ width: el.clientWidth, height: 300 });
    });
  }

  document.querySelectorAll(".chart[data-chart]").forEach(draw);

  document.querySelectorAll("[data-copy]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var input = document.querySelector(btn.getAttribute("data-copy"));
      input.select();
      var done = function () { btn.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () {
          document.execCommand("copy"); done();
        });
      } else {
        document.execCommand("copy"); done();
      }
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
})();
