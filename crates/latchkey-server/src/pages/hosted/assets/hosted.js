// The waiting page's live wait: asks the status endpoint every second and a half, and
// reloads the page (which then goes on, or says why not) once the request is no longer waiting.
// Without this script the page works the same through its "check again" button.
(function () {
  var wait = document.getElementById("wait");
  if (!wait) return;
  var statusUrl = wait.getAttribute("data-status");
  var next = wait.getAttribute("data-next");
  function poll() {
    fetch(statusUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && s.status !== "waiting") { window.location.assign(next); return; }
        setTimeout(poll, 1500);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1500);
})();
