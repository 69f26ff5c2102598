// Follows a starting desktop's phase and opens the desktop once it is Ready.
const bar = document.getElementById("progress");
const phase = document.getElementById("phase");
const { namespace, name } = bar.dataset;
const steps = { Pending: 1, Starting: 2, Running: 3, Ready: 4 };

async function poll() {
  try {
    const r = await fetch(`/api/desktops/${namespace}/${name}`, { credentials: "same-origin" });
    if (r.status === 401) { location.href = `/login?next=${encodeURIComponent(location.pathname)}`; return; }
    if (r.ok) {
      const d = await r.json();
      phase.textContent = d.message ? `${d.phase}: ${d.message}` : d.phase;
      bar.value = steps[d.phase] || bar.value;
      if (d.phase === "Ready") { location.reload(); return; }
    }
  } catch (e) {
    phase.textContent = `cannot reach the broker (${e}); retrying`;
  }
  setTimeout(poll, 1000);
}
setTimeout(poll, 1000);
