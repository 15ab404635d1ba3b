// The draw-a-digit page: strokes on a canvas (dark ink on white paper, about as thick relative to
// the digit as MNIST's), sent as a PNG to POST /predict while drawing and when a stroke ends.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const status = document.getElementById("status");
let drawing = false, dirty = false, busy = false, last = null;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("answer").hidden = true;
  status.textContent = "Nothing drawn yet.";
  status.className = "";
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

function stroke(to) {
  ink.strokeStyle = "#111";
  ink.lineWidth = 20;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(...(last || to));
  ink.lineTo(...to);
  ink.stroke();
  last = to;
  dirty = true;
}

pad.addEventListener("pointerdown", (e) => { drawing = true; last = null; pad.setPointerCapture(e.pointerId); stroke(point(e)); });
pad.addEventListener("pointermove", (e) => { if (drawing) stroke(point(e)); });
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => { if (drawing) { drawing = false; predictDrawing(); } });
}
setInterval(() => { if (drawing) predictDrawing(); }, 300);  // guesses while the stroke goes on

function predictDrawing() {
  if (!dirty || busy) return;
  dirty = false;
  pad.toBlob((blob) => send(blob, "image/png"), "image/png");
}

async function send(body, type) {
  busy = true;
  status.textContent = "Reading…";
  status.className = "";
  try {
    const response = await fetch("predict?seen=true", { method: "POST", headers: { "Content-Type": type }, body });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    show(answer);
  } catch (error) {
    document.getElementById("answer").hidden = true;
    status.textContent = "Could not read a digit: " + error.message;
    status.className = "error";
  } finally {
    busy = false;
    if (dirty && !drawing) predictDrawing();
  }
}

function show(answer) {
  status.textContent = "";
  const digit = document.getElementById("digit");
  const sure = (100 * answer.confidence).toFixed(1) + "%";
  // The verdict first: not a digit, unsure between two, or the digit. The closest guess stays small.
  digit.classList.toggle("verdict", answer.is_digit === false || answer.unsure_between !== null);
  if (answer.is_digit === false) {
    digit.textContent = "Not a digit";
    document.getElementById("confidence").textContent = `closest: ${answer.digit} (${sure})`;
  } else if (answer.unsure_between) {
    digit.textContent = answer.unsure_between.join(" or ");
    document.getElementById("confidence").textContent = "unsure between them";
  } else {
    digit.textContent = answer.digit;
    document.getElementById("confidence").textContent = sure + " sure";
  }
  const top = document.getElementById("top");
  top.replaceChildren();
  const ranked = answer.probabilities.map((p, d) => [p, d]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  for (const [p, d] of ranked) {
    const item = document.createElement("li");
    item.setAttribute("aria-label", `${d}: ${(100 * p).toFixed(1)} percent`);
    item.innerHTML = `<span>${d}</span><span class="bar" style="width:${Math.max(1, 100 * p)}%"></span><span>${(100 * p).toFixed(1)}%</span>`;
    top.append(item);
  }
  document.getElementById("seen").src = answer.seen;
  document.getElementById("answer").hidden = false;
}

function sendFile(file) {
  if (file) send(file, file.type || "application/octet-stream");
}

document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("file").addEventListener("change", (e) => sendFile(e.target.files[0]));
pad.addEventListener("dragover", (e) => { e.preventDefault(); pad.classList.add("dragging"); });
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (e) => { e.preventDefault(); pad.classList.remove("dragging"); sendFile(e.dataTransfer.files[0]); });
pad.addEventListener("keydown", (e) => { if (e.key === "Delete" || e.key === "Backspace") clearPad(); });
clearPad();
