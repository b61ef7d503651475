// phi-proxy access console: the only script, loaded from /console/static/ (CSP: script-src 'self').
// Every page works without it; it only adds a quick filter above long tables.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  let n = 0;
  for (const table of document.querySelectorAll("table[data-quick-filter]")) {
    n += 1;
    const id = `quick-filter-${n}`;
    const box = document.createElement("div");
    box.className = "field quick";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = "Narrow this list (type part of a name, practice or state)";
    const input = document.createElement("input");
    input.id = id;
    input.type = "search";
    input.autocomplete = "off";
    const status = document.createElement("span");
    status.className = "small";
    status.setAttribute("role", "status");
    box.append(label, input, status);
    table.closest(".table-wrap").before(box);
    const rows = Array.from(table.tBodies[0].rows);
    input.addEventListener("input", () => {
      const needle = input.value.trim().toLowerCase();
      let shown = 0;
      for (const row of rows) {
        const match = !needle || row.textContent.toLowerCase().includes(needle);
        row.hidden = !match;
        if (match) shown += 1;
      }
      status.textContent = needle ? `${shown} of ${rows.length} rows shown` : "";
    });
  }
});
