// facekit CameraWidget front end (anywidget ESM). Taught in notebook 06.
//
// The browser owns the camera (getUserMedia), so this works with a remote kernel. Frames go to
// Python as JPEG buffers of custom messages; at most ONE frame is in flight per view: the next
// frame is captured only when Python has answered ("result" or "dropped") the previous one.
// Results (boxes, names, distances) are drawn on a canvas over the <video>, which plays on at
// full rate whatever the recognition rate.

const INSECURE =
  "The camera needs a secure page: browsers only allow getUserMedia on https:// pages or on " +
  "http://localhost. This page is {origin}. Fix: open JupyterLab as http://localhost:PORT (e.g. " +
  "through an SSH tunnel: ssh -L 8888:localhost:8888 server) or serve it over https -- or use the " +
  "server-side VideoSource instead.";

// A camera error -> {kind, text} with what to do about it.
export function describeCameraError(err) {
  const name = (err && err.name) || "Error";
  const detail = (err && err.message) || String(err);
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return {
        kind: "permission",
        text:
          "Camera permission denied. Allow camera access for this page (the camera icon in " +
          "the address bar, or the browser's site settings), then press Start again.",
      };
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return {
        kind: "no-camera",
        text:
          "No camera found. Plug in a webcam (or enable it in the system settings), then press " +
          "Start again. Without a camera, use the server-side VideoSource on a video file.",
      };
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return {
        kind: "busy",
        text:
          "The camera is in use by another application or blocked by the system. Close the " +
          "other application, then press Start again. (" + detail + ")",
      };
    default:
      return { kind: "error", text: "Could not start the camera: " + name + ": " + detail };
  }
}

// null when getUserMedia can be used on this page, else {kind, text}.
export function cameraSupport(win) {
  win = win || window;
  if (!win.isSecureContext) {
    return { kind: "insecure", text: INSECURE.replace("{origin}", String(win.location.origin)) };
  }
  if (!win.navigator.mediaDevices || !win.navigator.mediaDevices.getUserMedia) {
    return {
      kind: "unsupported",
      text: "This browser has no camera API (navigator.mediaDevices). Use a current Chrome, " +
        "Firefox, Edge or Safari -- or the server-side VideoSource.",
    };
  }
  return null;
}

function h(tag, cls, attrs) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function render({ model, el }) {
  const root = h("div", "facekit-camera");
  const stage = h("div", "fk-stage");
  const video = h("video", "fk-video", { playsinline: "", muted: "" });
  video.muted = true;
  const overlay = h("canvas", "fk-overlay");
  const placeholder = h("div", "fk-placeholder");
  placeholder.textContent = "Camera off: press Start.";
  stage.append(video, overlay, placeholder);

  const bar = h("div", "fk-bar");
  const startBtn = h("button", "fk-start", { type: "button" });
  startBtn.textContent = "Start camera";
  const thrLabel = h("label", "fk-threshold-label");
  thrLabel.textContent = "unknown above ";
  const thr = h("input", "fk-threshold", { type: "range", min: "0.2", step: "0.05" });
  const thrVal = h("span", "fk-threshold-value");
  thrLabel.append(thr, thrVal);
  const stats = h("span", "fk-stats");
  stats.textContent = "processed: - fps, latency: - ms";
  bar.append(startBtn, thrLabel, stats);

  const enrol = h("div", "fk-enrol");
  const nameIn = h("input", "fk-name", { type: "text", placeholder: "your name", "aria-label": "name to enrol" });
  const shotsIn = h("input", "fk-shots", { type: "number", min: "1", max: "50", "aria-label": "shots" });
  const enrolBtn = h("button", "fk-enrol-button", { type: "button" });
  enrolBtn.textContent = "Enrol me";
  const shotsLabel = h("span", "fk-shots-label");
  shotsLabel.textContent = " shots ";
  const consentLabel = h("label", "fk-consent-label");
  const consentIn = h("input", "fk-consent", { type: "checkbox", "aria-label": "consent to store this face" });
  consentLabel.append(consentIn, document.createTextNode(
    " this person agrees to have their face stored on this computer (it can be forgotten later)"));
  enrol.append(nameIn, shotsLabel, shotsIn, enrolBtn, consentLabel);

  const message = h("div", "fk-message", { role: "alert" });
  const status = h("div", "fk-status");
  const names = h("div", "fk-names", { "aria-live": "polite" });
  root.append(stage, bar, enrol, message, status, names);
  el.appendChild(root);

  const view = Math.random().toString(36).slice(2, 10);
  const cap = document.createElement("canvas");
  let stream = null;
  let inflight = null; // {id, t0}
  let seq = 0;
  let lastSend = 0;
  let timer = null;
  let last = null; // last result
  let lastResultAt = 0;
  let fps = 0;
  let latency = 0;
  let destroyed = false;

  function showMessage(text, kind) {
    message.textContent = text || "";
    message.dataset.kind = kind || "";
    message.style.display = text ? "block" : "none";
  }
  function setError(text) {
    model.set("error", text || "");
    model.save_changes();
  }
  function syncThreshold() {
    thr.max = String(model.get("threshold_max"));
    thr.value = String(model.get("threshold"));
    thrVal.textContent = Number(model.get("threshold")).toFixed(2);
  }
  function syncStatus() {
    status.textContent = model.get("status") || "";
  }
  syncThreshold();
  syncStatus();
  shotsIn.value = String(model.get("shots"));
  video.style.transform = model.get("mirror") ? "scaleX(-1)" : "";

  function draw() {
    const cw = video.clientWidth;
    const ch = video.clientHeight;
    if (overlay.width !== cw || overlay.height !== ch) {
      overlay.width = cw;
      overlay.height = ch;
    }
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, cw, ch);
    if (!last || !stream || !last.width || !last.faces) return;
    const sx = cw / last.width;
    const sy = ch / last.height;
    const mirror = model.get("mirror");
    ctx.lineWidth = 2;
    ctx.font = "14px sans-serif";
    ctx.textBaseline = "bottom";
    for (const f of last.faces) {
      let [x1, y1, x2, y2] = f.box;
      x1 *= sx; x2 *= sx; y1 *= sy; y2 *= sy;
      if (mirror) [x1, x2] = [cw - x2, cw - x1];
      const color = f.name === "unknown" ? "#e63c28" : f.name === "..." ? "#f0c800" : "#28c83c";
      ctx.strokeStyle = color;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = f.distance == null ? f.name : f.name + " " + f.distance.toFixed(2);
      const tw = ctx.measureText(label).width + 6;
      const ty = Math.max(y1, 18);
      ctx.fillStyle = color;
      ctx.fillRect(x1, ty - 18, tw, 18);
      ctx.fillStyle = "#000";
      ctx.fillText(label, x1 + 3, ty - 2);
    }
  }

  function onResult(msg) {
    const now = performance.now();
    if (inflight && msg.id === inflight.id) {
      const lat = now - inflight.t0;
      latency = latency ? 0.8 * latency + 0.2 * lat : lat;
      inflight = null;
    }
    if (msg.type !== "result") return;
    if (lastResultAt) {
      const inst = 1000 / Math.max(1, now - lastResultAt);
      fps = fps ? 0.8 * fps + 0.2 * inst : inst;
    }
    lastResultAt = now;
    last = msg;
    stats.textContent =
      "processed: " + fps.toFixed(1) + " fps, latency: " + latency.toFixed(0) + " ms" +
      (msg.server_ms != null ? " (Python " + Number(msg.server_ms).toFixed(0) + " ms)" : "");
    const faces = msg.faces || [];
    names.textContent = faces.length
      ? "Seen: " + faces.map((f) => f.name + (f.distance == null ? "" : " (" + f.distance.toFixed(2) + ")")).join(", ")
      : "Seen: no face";
    if (msg.message) status.textContent = msg.message;
    draw();
  }

  model.on("msg:custom", (msg) => {
    if (!msg || (msg.type !== "result" && msg.type !== "dropped")) return;
    if (msg.view !== view) return; // another view's frame
    onResult(msg);
  });
  model.on("change:threshold", syncThreshold);
  model.on("change:threshold_max", syncThreshold);
  model.on("change:status", syncStatus);
  model.on("change:mirror", () => {
    video.style.transform = model.get("mirror") ? "scaleX(-1)" : "";
    draw();
  });
  model.on("change:running", () => {
    if (model.get("running") && !stream) start();
    if (!model.get("running") && stream) stop();
  });

  async function sendFrame(now) {
    const w = Math.min(model.get("width"), video.videoWidth);
    const hgt = Math.round((video.videoHeight * w) / video.videoWidth);
    cap.width = w;
    cap.height = hgt;
    cap.getContext("2d").drawImage(video, 0, 0, w, hgt);
    const id = ++seq;
    inflight = { id, t0: now };
    lastSend = now;
    const blob = await new Promise((res) => cap.toBlob(res, "image/jpeg", model.get("jpeg_quality")));
    if (!blob || !stream) {
      inflight = null;
      return;
    }
    const buf = await blob.arrayBuffer();
    model.send({ type: "frame", id, view, width: w, height: hgt }, undefined, [buf]);
  }

  async function pump() {
    timer = null;
    if (!stream || destroyed) return;
    const now = performance.now();
    if (inflight) {
      const waited = now - inflight.t0;
      if (waited > 2000) status.textContent = "waiting for the kernel (is a cell still running?)";
      if (waited > 30000) inflight = null; // the answer was lost (kernel restarted?): try again
    } else if (video.readyState >= 2 && video.videoWidth > 0 && now - lastSend >= 1000 / model.get("max_fps")) {
      try {
        await sendFrame(now);
      } catch (e) {
        inflight = null;
        status.textContent = "could not send a frame: " + e;
      }
    }
    if (overlay.width !== video.clientWidth) draw();
    timer = setTimeout(pump, 8);
  }

  async function start() {
    const problem = cameraSupport(window);
    if (problem) {
      showMessage(problem.text, problem.kind);
      setError(problem.text);
      return;
    }
    startBtn.disabled = true;
    showMessage("");
    try {
      const w = model.get("width");
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: w }, height: { ideal: Math.round((w * 3) / 4) } },
        audio: false,
      });
    } catch (err) {
      stream = null;
      const d = describeCameraError(err);
      showMessage(d.text, d.kind);
      setError(d.text);
      startBtn.disabled = false;
      if (model.get("running")) {
        model.set("running", false);
        model.save_changes();
      }
      return;
    }
    if (destroyed) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
      return;
    }
    video.srcObject = stream;
    try {
      await video.play();
    } catch (e) {
      /* autoplay of a muted stream is allowed; ignore */
    }
    placeholder.style.display = "none";
    startBtn.textContent = "Stop camera";
    startBtn.disabled = false;
    setError("");
    if (!model.get("running")) {
      model.set("running", true);
      model.save_changes();
    }
    if (!timer) pump();
  }

  function stop() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    inflight = null;
    if (timer) clearTimeout(timer);
    timer = null;
    video.srcObject = null;
    placeholder.style.display = "";
    startBtn.textContent = "Start camera";
    last = null;
    draw();
    if (!destroyed && model.get("running")) {
      model.set("running", false);
      model.save_changes();
    }
  }

  startBtn.addEventListener("click", () => (stream ? stop() : start()));
  thr.addEventListener("input", () => {
    thrVal.textContent = Number(thr.value).toFixed(2);
    model.set("threshold", Number(thr.value));
    model.save_changes();
  });
  enrolBtn.addEventListener("click", () => {
    const name = nameIn.value.trim();
    if (!name) {
      showMessage("Type your name first, then press Enrol.", "enrol");
      return;
    }
    if (!consentIn.checked) {
      showMessage("Ask first: " + name + " must agree to having their face stored. Tick the consent box, then press Enrol.", "enrol");
      return;
    }
    if (!stream) {
      showMessage("Start the camera first: enrolment takes shots from the live video.", "enrol");
      return;
    }
    showMessage("");
    const shots = Math.max(1, parseInt(shotsIn.value || model.get("shots"), 10));
    const consent = "agreed in the webcam widget on " + new Date().toISOString();
    model.send({ type: "enroll", name, shots, consent });
    status.textContent = "enrolling " + name + ": look at the camera";
  });

  const problem = cameraSupport(window);
  if (problem) {
    showMessage(problem.text, problem.kind);
    setError(problem.text);
  } else {
    showMessage("");
    if (model.get("running")) start();
  }

  return () => {
    destroyed = true;
    stop();
  };
}

export default { render };
