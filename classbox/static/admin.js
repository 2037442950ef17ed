/* The dashboard refreshes its panels (health, storage, sync, screens, problems) every few seconds. */
(function () {
  'use strict';
  var REFRESH_MS = 5000;
  var panels = document.getElementById('panels');
  if (!panels || !window.fetch) return;

  function refresh() {
    fetch(panels.getAttribute('data-src'), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error('status ' + r.status);
        return r.text();
      })
      .then(function (html) {
        // Keep an open history list open across refreshes.
        var open = panels.querySelector('details[open]') !== null;
        panels.innerHTML = html;
        if (open) {
          var d = panels.querySelector('details');
          if (d) d.open = true;
        }
        panels.removeAttribute('data-stale');
      })
      .catch(function () { panels.setAttribute('data-stale', '1'); })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }
  setTimeout(refresh, REFRESH_MS);
})();
