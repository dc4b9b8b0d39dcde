// The sample browser: filter, search and page through the rows in #sample-data.
// Only textContent is ever set from sample text, so a model's output cannot become markup.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sample-data").textContent);
  var columns = data.columns, rows = data.rows, pageSize = data.page_size || 200;
  var index = {};
  columns.forEach(function (name, i) { index[name] = i; });
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("sample-search");
  var body = document.getElementById("sample-rows");
  var count = document.getElementById("sample-count");
  var pageLabel = document.getElementById("sample-page");
  var prev = document.getElementById("sample-prev"), next = document.getElementById("sample-next");
  var haystacks = null; // lower-cased prompt + response + answer, built on the first search
  var state = {filters: {}, q: "", page: 1};

  // The same key as value_key() in report/samples.py.
  function key(value) { return value === null || value === undefined ? "" : String(value); }

  // The view lives in the address (#task=table_lookup&q=red); a plain anchor (#tables) is not a view.
  function addressHasView() { return location.hash.indexOf("=") !== -1; }

  function readAddress() {
    var params = new URLSearchParams(addressHasView() ? location.hash.replace(/^#/, "") : "");
    state = {filters: {}, q: params.get("q") || "", page: Math.max(1, parseInt(params.get("page"), 10) || 1)};
    selects.forEach(function (select) {
      var name = select.dataset.filter;
      if (params.has(name)) { state.filters[name] = params.get(name); }
    });
  }

  function writeAddress() {
    var params = new URLSearchParams();
    Object.keys(state.filters).forEach(function (name) { params.set(name, state.filters[name]); });
    if (state.q) { params.set("q", state.q); }
    if (state.page > 1) { params.set("page", String(state.page)); }
    var hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function showState() {
    selects.forEach(function (select) {
      var wanted = state.filters[select.dataset.filter];
      select.value = wanted === undefined ? "*" : wanted;
      if (wanted !== undefined && select.value !== wanted) { // a value from the address that no row has
        var option = document.createElement("option");
        option.value = wanted;
        option.textContent = wanted + " (no rows)";
        select.appendChild(option);
        select.value = wanted;
      }
    });
    search.value = state.q;
  }

  function matching() {
    var tests = Object.keys(state.filters).map(function (name) { return [index[name], state.filters[name]]; });
    var needle = state.q.toLowerCase();
    if (needle && haystacks === null) {
      haystacks = rows.map(function (row) {
        return ["prompt", "response", "answer"].map(function (c) { return key(row[index[c]]); })
          .join("\n").toLowerCase();
      });
    }
    var out = [];
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i], keep = true;
      for (var t = 0; t < tests.length && keep; t++) { keep = key(row[tests[t][0]]) === tests[t][1]; }
      if (keep && needle) { keep = haystacks[i].indexOf(needle) !== -1; }
      if (keep) { out.push(row); }
    }
    return out;
  }

  function share(found, column) {
    if (!(column in index) || !found.length) { return ""; }
    var yes = found.filter(function (row) { return row[index[column]] === true; }).length;
    return " \u00b7 " + (100 * yes / found.length).toFixed(1) + "% " + column;
  }

  function cell(row, column) {
    var td = document.createElement("td"), value = row[index[column]];
    td.className = "col-" + column;
    if (value === true || value === false) { td.className += value ? " yes" : " no"; }
    td.textContent = key(value);
    return td;
  }

  function render() {
    var found = matching();
    var pages = Math.max(1, Math.ceil(found.length / pageSize));
    state.page = Math.min(state.page, pages);
    var first = (state.page - 1) * pageSize, shown = found.slice(first, first + pageSize);
    var fragment = document.createDocumentFragment();
    shown.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.className = "sample-row";
      columns.forEach(function (column) { tr.appendChild(cell(row, column)); });
      fragment.appendChild(tr);
    });
    body.replaceChildren(fragment);
    count.dataset.matching = String(found.length);
    count.dataset.shown = String(shown.length);
    count.dataset.page = String(state.page);
    count.textContent = (found.length ? "showing " + (first + 1) + "\u2013" + (first + shown.length) + " of " : "")
      + found.length + " matching samples (" + rows.length + " in all)"
      + share(found, "correct") + share(found, "adherent");
    pageLabel.textContent = "page " + state.page + " of " + pages;
    prev.disabled = state.page <= 1;
    next.disabled = state.page >= pages;
  }

  function update() { writeAddress(); render(); }

  selects.forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.value === "*") { delete state.filters[select.dataset.filter]; }
      else { state.filters[select.dataset.filter] = select.value; }
      state.page = 1;
      update();
    });
  });
  search.addEventListener("input", function () { state.q = search.value; state.page = 1; update(); });
  prev.addEventListener("click", function () { state.page -= 1; update(); });
  next.addEventListener("click", function () { state.page += 1; update(); });
  document.getElementById("sample-reset").addEventListener("click", function () {
    state = {filters: {}, q: "", page: 1};
    showState();
    update();
  });
  window.addEventListener("hashchange", function () {
    if (addressHasView()) { readAddress(); showState(); render(); }
  });

  readAddress();
  showState();
  render();
  if (addressHasView()) { document.getElementById("samples").scrollIntoView(); }
}());
