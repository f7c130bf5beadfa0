// Live updates: the server pushes already-escaped HTML fragments by element id over SSE.
(function () {
  const url = document.body.dataset.events;
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  source.onmessage = (e) => {
    const fragments = JSON.parse(e.data);
    for (const [id, html] of Object.entries(fragments)) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = html;
    }
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  };
})();
