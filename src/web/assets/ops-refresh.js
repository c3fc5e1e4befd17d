// Reloads the ops console every few seconds so its counts stay current,
// but not while someone is writing in one of its forms (a rejection reason
// would be lost) nor while the tab is hidden. Without JavaScript the page
// falls back to a <noscript> meta refresh.
(function () {
  "use strict";
  var script = document.currentScript;
  var seconds = Number(script && script.dataset.seconds) || 10;

  function someoneIsWriting() {
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) {
      return true;
    }
    var fields = document.querySelectorAll("main input[type=text], main textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== "") {
        return true;
      }
    }
    return false;
  }

  window.setInterval(function () {
    if (!document.hidden && !someoneIsWriting()) {
      window.location.reload();
    }
  }, seconds * 1000);
})();
