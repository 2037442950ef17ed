/*
 * classbox upload: send a big file (a 500 MB lesson video) to the hub over a link that drops.
 *
 *   <script src="/static/upload.js"></script>
 *   const result = await window.classboxUpload(file, {
 *     csrf: token,                                  // required: the session's CSRF token
 *     onProgress: (sent, total) => { ... },         // bytes the hub holds (safely on its disk), of total
 *     signal: controller.signal,                    // optional AbortSignal: stop (the upload stays resumable)
 *   });
 *   // result: {sha256, size, media_type, kind: "video" | "document" | "image", name}
 *
 * Other options: chunkSize (bytes per request, default 4 MiB, at most 8 MiB), endpoint (default
 * "/hub/api/uploads").
 *
 * The file goes in chunks (PATCH with Upload-Offset, see classbox/web/hub_uploads.py). After a network
 * error or a 5xx answer it waits (1 s, doubling up to 30 s, with jitter; back to 1 s after progress), asks
 * the hub how much it holds (HEAD) and goes on from there, for as long as it takes. A 409 means the hub
 * holds another offset: it goes on from that one at once. The promise rejects only when `signal` aborts
 * (an AbortError) or on another 4xx, or 501/507 (disk full): an Error with `status`, `code` and the hub's
 * message, e.g. status 415 "not a video, PDF or image: the file starts with ...", status 401 (logged
 * out), 413 (too large).
 *
 * The upload's id is remembered in localStorage for this file (name, size, modification time), so
 * calling classboxUpload again with the same file after a reload, or after an abort, resumes it.
 * Uploads nobody touches for a week are removed by the hub.
 */
(function () {
  "use strict";

  const CHUNK = 4 * 1024 * 1024;
  const FIRST_DELAY = 1000;
  const LONGEST_DELAY = 30000;

  class UploadError extends Error {
    constructor(message, status, code) {
      super(message);
      this.name = "UploadError";
      this.status = status;
      this.code = code;
    }
  }

  function abortError(signal) {
    if (signal && signal.reason instanceof Error) return signal.reason;
    return new DOMException("the upload was stopped", "AbortError");
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) { reject(abortError(signal)); return; }
      const onAbort = () => { clearTimeout(timer); reject(abortError(signal)); };
      const timer = setTimeout(() => {
        if (signal) signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  // A transient failure: wait and ask the hub where it stands.
  class Retry extends Error {}

  function retryable(status) {
    return status >= 500 && status !== 501 && status !== 507;
  }

  async function failure(response) {
    let message = `HTTP ${response.status}`;
    let code = "";
    try {
      const body = await response.json();
      message = body.error || message;
      code = body.code || "";
    } catch (err) { /* no JSON body (HEAD, or a proxy's page) */ }
    return new UploadError(message, response.status, code);
  }

  function offsetOf(response) {
    const raw = response.headers.get("Upload-Offset");
    return raw !== null && /^\d+$/.test(raw) ? Number(raw) : null;
  }

  const memory = {
    get(key) { try { return window.localStorage.getItem(key); } catch (err) { return null; } },
    set(key, value) { try { window.localStorage.setItem(key, value); } catch (err) { /* private mode */ } },
    forget(key) { try { window.localStorage.removeItem(key); } catch (err) { /* private mode */ } },
  };

  async function classboxUpload(file, options = {}) {
    const { csrf, signal } = options;
    const onProgress = options.onProgress || (() => {});
    const chunkSize = Math.max(1, Math.min(options.chunkSize || CHUNK, 8 * 1024 * 1024));
    const endpoint = options.endpoint || "/hub/api/uploads";
    if (!csrf) throw new TypeError("classboxUpload needs options.csrf, the session's CSRF token");
    const key = `classbox-upload:${endpoint}:${file.name}:${file.size}:${file.lastModified}`;
    const common = { credentials: "same-origin", cache: "no-store", signal };

    // Each returns the upload's {url, offset}, or throws UploadError (give up) or Retry.
    async function ask(url) {
      const response = await fetch(url, { ...common, method: "HEAD" });
      if (response.status === 404) return null;
      if (retryable(response.status)) throw new Retry(`HTTP ${response.status}`);
      if (!response.ok) throw await failure(response);
      const offset = offsetOf(response);
      if (offset === null) throw new Retry("no Upload-Offset in the answer");
      return { url, offset };
    }

    async function create() {
      const response = await fetch(endpoint, {
        ...common,
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ name: file.name, size: file.size }),
      });
      if (retryable(response.status)) throw new Retry(`HTTP ${response.status}`);
      if (response.status !== 201) throw await failure(response);
      const body = await response.json();
      memory.set(key, body.url);
      return { url: body.url, offset: body.offset };
    }

    async function resumeOrCreate() {
      const remembered = memory.get(key);
      if (remembered) {
        const found = await ask(remembered);
        if (found) return found;
        memory.forget(key);  // expired, discarded, or another account's
      }
      return create();
    }

    let upload = null;
    let lost = true;  // we do not know the hub's offset: ask before sending
    let delay = FIRST_DELAY;
    let conflicts = 0;

    for (;;) {
      if (signal && signal.aborted) throw abortError(signal);
      try {
        if (upload === null) {
          upload = await resumeOrCreate();
          lost = false;
          onProgress(upload.offset, file.size);
        } else if (lost) {
          const found = await ask(upload.url);
          if (!found) {
            memory.forget(key);
            throw new UploadError("the upload is gone from the hub (removed, or unused for too long); start again",
              404, "not_found");
          }
          upload.offset = found.offset;
          lost = false;
          onProgress(upload.offset, file.size);
        }
        const start = upload.offset;
        const end = Math.min(start + chunkSize, file.size);
        const response = await fetch(upload.url, {
          ...common,
          method: "PATCH",
          headers: {
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": String(start),
            "X-CSRF-Token": csrf,
          },
          body: file.slice(start, end),  // at the end, empty: the hub answers with the result again
        });
        if (response.status === 204) {
          const offset = offsetOf(response);
          upload.offset = offset === null ? end : offset;
          conflicts = 0;
          delay = FIRST_DELAY;
          onProgress(upload.offset, file.size);
          continue;
        }
        if (response.status === 200) {
          const result = await response.json();
          memory.forget(key);
          onProgress(file.size, file.size);
          return result;
        }
        if (response.status === 409) {
          const offset = offsetOf(response);
          conflicts += 1;
          if (offset === null || conflicts > 3) throw new Retry("the hub keeps answering with another offset");
          upload.offset = offset;
          onProgress(upload.offset, file.size);
          continue;
        }
        if (retryable(response.status)) throw new Retry(`HTTP ${response.status}`);
        const error = await failure(response);
        if (error.status === 404 || error.status === 415) memory.forget(key);
        throw error;
      } catch (err) {
        if (signal && signal.aborted) throw abortError(signal);
        if (err instanceof UploadError) throw err;
        // A network error (fetch rejects with a TypeError), a cut answer, or a 5xx: wait, then ask.
        await sleep(delay * (0.5 + Math.random() / 2), signal);
        delay = Math.min(delay * 2, LONGEST_DELAY);
        conflicts = 0;
        lost = true;
      }
    }
  }

  window.classboxUpload = classboxUpload;
  window.classboxUpload.UploadError = UploadError;
})();
