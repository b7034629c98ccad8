// azr-verify audit console: the little behaviour the server-rendered pages need.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Choosing a verdict or a time range applies it at once.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  // A click anywhere on a record's row opens it (the time cell is the link without JS).
  for (const row of document.querySelectorAll("tr[data-href]")) {
    row.addEventListener("click", (event) => {
      if (event.target.closest("a") || window.getSelection().toString()) return;
      window.location.href = row.dataset.href;
    });
  }
});
