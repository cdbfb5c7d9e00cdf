/* Hygie web app behaviour (no inline script anywhere: the CSP forbids it).
   Idle timeout: a warning a couple of minutes before the server's idle timeout, then sign-out.
   The server enforces the timeout on its own; this only tells the person in time. */
(function () {
  "use strict";
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle-seconds") || "0", 10);
  if (!idle) { return; }
  var warnBefore = Math.min(120, Math.floor(idle / 5));
  var dialog = document.getElementById("idle-warning");
  var stay = document.getElementById("idle-stay");
  var form = document.getElementById("signout-form");
  var warnTimer = null;
  var endTimer = null;

  function signOut() {
    form.setAttribute("action", "/app/signout?reason=idle");
    form.submit();
  }
  function arm() {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    dialog.hidden = true;
    warnTimer = setTimeout(function () {
      dialog.hidden = false;
      stay.focus();
    }, (idle - warnBefore) * 1000);
    endTimer = setTimeout(signOut, idle * 1000);
  }
  stay.addEventListener("click", function () {
    fetch("/app/keepalive", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (r.status === 204) { arm(); } else { signOut(); } })
      .catch(function () { /* offline: the timers keep running */ });
  });
  document.addEventListener("htmx:afterRequest", arm);
  arm();
})();
