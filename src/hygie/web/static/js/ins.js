/* INS key check as you type (patient form). The server checks it again (fhir/identifiers.py):
   this only tells the person at once. Key = 97 - (13 first characters mod 97), 2A -> 19, 2B -> 18.
   Messages come from the page (data-* attributes of #ins-check), so they follow its language. */
(function () {
  "use strict";
  var nir = document.querySelector("[data-ins=nir]");
  var key = document.querySelector("[data-ins=key]");
  var out = document.getElementById("ins-check");
  if (!nir || !key || !out) { return; }
  var SHAPE = /^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$/;

  function expected(first13) {
    var dept = first13.slice(5, 7);
    var digits = first13.slice(0, 5) + (dept === "2A" ? "19" : dept === "2B" ? "18" : dept) +
      first13.slice(7);
    return 97 - (Number(digits) % 97);  // 13 digits: exact in a double
  }
  function show(state, message) {
    out.textContent = message || "";
    out.className = "ins-check" + (state ? " " + state : "");
    key.setAttribute("aria-invalid", state === "bad-key" ? "true" : "false");
    nir.setAttribute("aria-invalid", state === "bad-shape" ? "true" : "false");
    if (state === "bad-key" || state === "bad-shape") { out.className += " bad"; }
  }
  function check() {
    var n = nir.value.replace(/\s+/g, "").toUpperCase();
    var k = key.value.replace(/\s+/g, "");
    if (n.length === 15 && !k) {  // the whole INS pasted in the first field
      k = n.slice(13);
      n = n.slice(0, 13);
      nir.value = n;
      key.value = k;
    }
    if (!n && !k) { show("", ""); return; }
    if (n.length < 13) { show("", ""); return; }
    if (!SHAPE.test(n)) { show("bad-shape", out.getAttribute("data-bad-shape")); return; }
    if (!/^[0-9]{2}$/.test(k)) { show("", out.getAttribute("data-need-key")); return; }
    if (Number(k) !== expected(n)) { show("bad-key", out.getAttribute("data-bad-key")); return; }
    show("ok", out.getAttribute("data-ok"));
  }
  nir.addEventListener("input", check);
  key.addEventListener("input", check);
  check();
})();
