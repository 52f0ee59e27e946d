// kargo-rs UI: live updates, actions through the REST API, the promote preview.
// Our own code; no libraries.
(function () {
  "use strict";
  // Script errors of the page, for whoever checks (the browser tests read them).
  window.__errors = window.__errors || [];
  window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
  window.addEventListener("unhandledrejection", function (e) {
    window.__errors.push("unhandled rejection: " + String(e.reason));
  });
  var body = document.body;
  var base = body.dataset.base || "";
  var project = body.dataset.project || "";
  var watch = body.dataset.watch || "";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.content : "";

  function flash(text, ok) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.className = ok ? "ok" : "";
    el.hidden = !text;
  }

  // Live updates: one stream per page; every relevant change re-renders <main>.
  var refreshing = false;
  var dirty = false;
  function refresh() {
    if (refreshing) { dirty = true; return; }
    refreshing = true;
    dirty = false;
    fetch(location.href, { headers: { "X-Fragment": "main" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          var main = document.getElementById("main");
          var open = {};
          main.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
          main.innerHTML = html;
          main.querySelectorAll("details[id]").forEach(function (d) {
            if (open[d.id]) d.open = true;
          });
          body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
          startPreview();
        }
      })
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (dirty) refresh();
      });
  }
  if (watch && project && window.EventSource) {
    var url = base + "/v1beta1/projects/" + encodeURIComponent(project) +
      "/watch?kinds=" + encodeURIComponent(watch);
    var source = new EventSource(url, { withCredentials: true });
    watch.split(",").concat(["reset"]).forEach(function (kind) {
      source.addEventListener(kind, refresh);
    });
    source.onopen = function () { body.dataset.live = "on"; };
  }

  // Actions: buttons carry the API call; the answer decides what happens next.
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("button.action");
    if (!button) return;
    ev.preventDefault();
    var question = button.dataset.confirm;
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    flash("");
    fetch(base + button.dataset.path, {
      method: button.dataset.method || "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: button.dataset.body || "{}"
    })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) { return [r, j]; });
      })
      .then(function (pair) {
        var r = pair[0], j = pair[1];
        if (!r.ok) {
          flash((j && j.error) || ("the server answered " + r.status));
          button.disabled = false;
          return;
        }
        if (button.dataset.then === "promotion" && j.promotion) {
          location.href = base + "/ui/projects/" + encodeURIComponent(project) +
            "/promotions/" + encodeURIComponent(j.promotion);
          return;
        }
        flash(button.textContent + ": done", true);
        button.disabled = false;
        refresh();
      })
      .catch(function (e) {
        flash("the request failed: " + e);
        button.disabled = false;
      });
  });

  // The promote page: what the promotion would change, before confirming.
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  function renderPreview(box, p) {
    box.textContent = "";
    var h = document.createElement("h2");
    h.textContent = "Artifacts";
    box.appendChild(h);
    var table = document.createElement("table");
    table.className = "compare";
    var head = document.createElement("tr");
    ["", "artifact", "now in the Stage", "after", "change"].forEach(function (t) {
      var th = document.createElement("th"); th.textContent = t; head.appendChild(th);
    });
    table.appendChild(head);
    p.artifacts.forEach(function (a) {
      var tr = document.createElement("tr");
      cell(tr, a.kind); cell(tr, a.key); cell(tr, a.from || "—"); cell(tr, a.to || "—");
      cell(tr, a.change, a.change);
      table.appendChild(tr);
    });
    box.appendChild(table);
    var h2 = document.createElement("h2");
    h2.textContent = p.files.length ? "Files that would change (" + p.files.length + ")" : "No file would change";
    box.appendChild(h2);
    p.files.forEach(function (f) {
      var title = document.createElement("div");
      title.className = "muted";
      title.textContent = f.repoURL + " · " + f.path;
      box.appendChild(title);
      var pre = document.createElement("pre");
      pre.className = "diff";
      f.diff.split("\n").forEach(function (line) {
        var span = document.createElement("span");
        if (line.indexOf("+++") === 0 || line.indexOf("---") === 0) span.className = "";
        else if (line[0] === "+") span.className = "add";
        else if (line[0] === "-") span.className = "del";
        else if (line.indexOf("@@") === 0) span.className = "hunk";
        span.textContent = line + "\n";
        pre.appendChild(span);
      });
      box.appendChild(pre);
    });
    p.pushes.forEach(function (x) {
      var d = document.createElement("p");
      d.className = "push";
      d.textContent = "Would push to " + x.repoURL + " " + (x.tag ? "tag " + x.tag : "branch " + x.branch) +
        ": " + x.message.split("\n")[0];
      box.appendChild(d);
    });
    if (!p.succeeded) {
      var warn = document.createElement("p");
      warn.className = "reason";
      warn.textContent = "The dry run did not succeed: " + (p.message || "see the steps");
      box.appendChild(warn);
    }
  }
  function startPreview() {
    var box = document.getElementById("preview");
    if (!box || box.dataset.started) return;
    box.dataset.started = "1";
    fetch(base + box.dataset.path, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return [r, j]; }); })
      .then(function (pair) {
        var r = pair[0], j = pair[1];
        if (!r.ok) { box.textContent = j.error || ("the server answered " + r.status); return; }
        renderPreview(box, j);
        box.dataset.ready = "1";
        var confirm = document.getElementById("confirm");
        if (confirm) confirm.disabled = false;
      })
      .catch(function (e) { box.textContent = "the preview failed: " + e; });
  }
  startPreview();
})();
