/* Document upload: refuse a file over the size limit before sending it (the server checks the
   size, the declared type and the file's first bytes again). */
(function () {
  "use strict";
  var input = document.querySelector("input[type=file][data-max-bytes]");
  var out = document.getElementById("f-file-check");
  if (!input || !out) { return; }
  var max = parseInt(input.getAttribute("data-max-bytes"), 10);
  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    var tooLarge = Boolean(file && file.size > max);
    var message = tooLarge ? input.getAttribute("data-too-large") : "";
    input.setCustomValidity(message);
    input.setAttribute("aria-invalid", tooLarge ? "true" : "false");
    out.textContent = message;
  });
})();
