// Search results: pick two traces, then compare them (/compare?a=&b=, in picking order).
(function () {
  "use strict";
  const button = document.getElementById("compare-picked");
  if (!button) return;
  const picked = [];
  document.getElementById("results").addEventListener("change", (event) => {
    const box = event.target.closest("input.pick");
    if (!box) return;
    const at = picked.indexOf(box.value);
    if (box.checked && at < 0) picked.push(box.value);
    if (!box.checked && at >= 0) picked.splice(at, 1);
    while (picked.length > 2) {
      const first = picked.shift();
      document.querySelector('input.pick[value="' + first + '"]').checked = false;
    }
    button.disabled = picked.length !== 2;
  });
  button.addEventListener("click", () => {
    location.href = "/compare?a=" + picked[0] + "&b=" + picked[1];
  });
})();
