// Sortable tables and row filters; plain DOM, no dependencies, works from file://.
(function () {
  function cellKey(td) {
    var raw = td.getAttribute("data-sort");
    if (raw === null) raw = td.textContent.trim();
    var num = parseFloat(raw);
    return (raw !== "" && !isNaN(num) && isFinite(raw)) ? num : raw.toLowerCase();
  }
  function sortBy(th) {
    var table = th.closest("table");
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a.cells[idx]), y = cellKey(b.cells[idx]);
      var xn = typeof x === "number", yn = typeof y === "number";
      var c = (xn && yn) ? x - y : (xn ? -1 : (yn ? 1 : (x < y ? -1 : (x > y ? 1 : 0))));
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
  var fd = document.getElementById("filter-dataset"), fm = document.getElementById("filter-method"),
      fs = document.getElementById("filter-system"), count = document.getElementById("row-count");
  function apply() {
    var d = fd ? fd.value : "", m = fm ? fm.value : "", q = fs ? fs.value.trim().toLowerCase() : "";
    var shown = 0;
    document.querySelectorAll("table.filterable tbody tr").forEach(function (tr) {
      var ok = (!d || tr.getAttribute("data-dataset") === d) && (!m || tr.getAttribute("data-method") === m) &&
               (!q || (tr.getAttribute("data-system") || "").toLowerCase().indexOf(q) >= 0);
      tr.hidden = !ok;
      if (ok && tr.closest("table").id === "scores") shown++;
    });
    document.querySelectorAll("section.matrix").forEach(function (s) {
      s.hidden = !!m && s.getAttribute("data-methods").split("|").indexOf(m) < 0;
    });
    if (count) count.textContent = shown + " rows";
  }
  [fd, fm].forEach(function (el) { if (el) el.addEventListener("change", apply); });
  if (fs) fs.addEventListener("input", apply);
  apply();
})();
