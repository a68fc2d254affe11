// The review page: keyboard shortcuts, slider/number sync, the live final score, the benchmark plots.
// Plain script, no build step. The final score is the weighted mean of the measured scores with the weights
// renormalised over them: the same rule as scoring.core.aggregate.weighted_mean on the server.
(function () {
  "use strict";
  var form = document.getElementById("label-form");
  if (!form) return;
  var sections = Array.prototype.slice.call(form.querySelectorAll(".crit"));
  var weights = JSON.parse(document.getElementById("weights").textContent);
  var help = document.getElementById("help");
  var current = -1;

  function parts(section) {
    return {
      range: section.querySelector('input[type="range"]'),
      number: section.querySelector('input[type="number"]'),
      na: section.querySelector('input[type="checkbox"]'),
      note: section.querySelector("input.note"),
    };
  }

  function weightedMean() {
    var total = 0, sum = 0;
    sections.forEach(function (section) {
      var p = parts(section), w = weights[section.dataset.criterion] || 0;
      if (p.na.checked) return;
      total += w;
      sum += w * parseFloat(p.range.value);
    });
    return total > 0 ? Math.round((sum / total) * 10000) / 10000 : null;
  }

  function showFinal() {
    var value = weightedMean();
    document.getElementById("live-final").textContent = value === null ? "—" : value.toFixed(2);
  }

  function setValue(section, value) {
    var p = parts(section);
    if (p.range.disabled) return;
    value = Math.min(1, Math.max(0, Math.round(value * 100) / 100));
    p.range.value = value;
    p.number.value = value.toFixed(2);
    p.na.checked = false;
    showFinal();
  }

  function select(index) {
    if (!sections.length) return;
    current = (index + sections.length) % sections.length;
    sections.forEach(function (s, i) { s.classList.toggle("current", i === current); });
    var p = parts(sections[current]);
    p.range.focus({ preventScroll: true });
    sections[current].scrollIntoView({ block: "nearest" });
  }

  sections.forEach(function (section, index) {
    var p = parts(section);
    p.range.addEventListener("input", function () { setValue(section, parseFloat(p.range.value)); });
    p.number.addEventListener("input", function () {
      var v = parseFloat(p.number.value);
      if (!isNaN(v)) { p.range.value = Math.min(1, Math.max(0, v)); p.na.checked = false; showFinal(); }
    });
    p.na.addEventListener("change", function () {
      p.number.value = p.na.checked ? "" : parseFloat(p.range.value).toFixed(2);
      showFinal();
    });
    section.addEventListener("focusin", function () {
      current = index;
      sections.forEach(function (s, i) { s.classList.toggle("current", i === current); });
    });
  });

  function typing(target) {
    return target.matches('textarea, select, input:not([type="range"]):not([type="checkbox"])');
  }

  function openHelp() { if (!help.open) help.showModal(); }
  document.querySelectorAll("[data-help]").forEach(function (b) { b.addEventListener("click", openHelp); });

  document.addEventListener("keydown", function (event) {
    if (help.open) return; // the dialog handles Esc itself
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(form.querySelector('button.primary[type="submit"]'));
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); select(current < 0 ? 0 : current); }
      // Enter in a one-line note must not submit the whole label by accident.
      if (event.key === "Enter" && event.target.matches("input.note")) event.preventDefault();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var section = sections[current < 0 ? 0 : current];
    var key = event.key, handled = true;
    if (key === "?") openHelp();
    else if (key === "j") select(current + 1);
    else if (key === "k") select(current < 0 ? sections.length - 1 : current - 1);
    else if (key === "h" || key === "ArrowLeft") { if (current < 0) select(0); setValue(section, parseFloat(parts(section).range.value) - 0.05); }
    else if (key === "l" || key === "ArrowRight") { if (current < 0) select(0); setValue(section, parseFloat(parts(section).range.value) + 0.05); }
    else if (/^[0-9]$/.test(key)) { if (current < 0) select(0); setValue(section, parseInt(key, 10) / 10); }
    else if (key === "=") { if (current < 0) select(0); setValue(section, 1); }
    else if (key === "a") { if (section.dataset.auto !== "") setValue(section, parseFloat(section.dataset.auto)); }
    else if (key === "u") { var na = parts(section).na; na.checked = !na.checked; na.dispatchEvent(new Event("change")); }
    else if (key === "e") parts(section).note.focus();
    else if (key === "c") document.getElementById("comment").focus();
    else if (key === "x") { var skip = document.getElementById("skip-button"); if (skip) form.requestSubmit(skip); }
    else handled = false;
    if (handled) event.preventDefault();
  });

  // Small plots of the benchmark runs (any list of numbers in a criterion's evidence).
  if (window.Chart) {
    document.querySelectorAll("canvas[data-series]").forEach(function (canvas) {
      var series = JSON.parse(document.getElementById(canvas.dataset.series).textContent);
      var longest = Math.max.apply(null, series.map(function (s) { return s.data.length; }));
      new window.Chart(canvas, {
        type: "line",
        data: {
          labels: Array.from({ length: longest }, function (_, i) { return i + 1; }),
          datasets: series.map(function (s, i) {
            return { label: s.label, data: s.data, hidden: i > 1, pointRadius: 2, borderWidth: 1.5, tension: 0 };
          }),
        },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          plugins: { legend: { position: "bottom", labels: { boxWidth: 10, font: { size: 11 } } } },
          scales: { x: { title: { display: true, text: "run" } }, y: { beginAtZero: false } },
        },
      });
    });
  }

  showFinal();
})();
