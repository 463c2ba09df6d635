/* Admin dashboard: refresh the live figures every 20 s unless the experimenter is typing. */
(function () {
  "use strict";
  const PERIOD_MS = 20000;
  setInterval(() => {
    const active = document.activeElement;
    const typing = active && active.tagName === "INPUT" && active.type === "text";
    const drafted = Array.from(document.querySelectorAll("input[name=reason]")).some((i) => i.value);
    if (!typing && !drafted) window.location.reload();
  }, PERIOD_MS);
})();
