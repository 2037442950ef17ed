/* The hub's lesson page: upload files (resumably, with upload.js) and mark pause points on the video. */
(function () {
  'use strict';
  var root = document.getElementById('lesson');
  if (!root) return;
  var csrf = root.getAttribute('data-csrf');

  function post(url, method, body) {
    return fetch(url, {
      method: method, credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error(data.error || ('HTTP ' + r.status));
        return data;
      });
    });
  }

  var video = document.getElementById('video');
  var addPoint = document.getElementById('add-point');
  var promptInput = document.getElementById('prompt');
  var pointStatus = document.getElementById('point-status');
  if (video && addPoint) {
    addPoint.addEventListener('click', function () {
      var text = promptInput.value.trim();
      if (!text) { pointStatus.textContent = '请先写好暂停时的提示。'; promptInput.focus(); return; }
      video.pause();
      var at = Math.round(video.currentTime * 100) / 100;
      pointStatus.textContent = '正在保存…';
      post(root.getAttribute('data-points-url'), 'POST', { at: at, prompt: text })
        .then(function () { window.location.reload(); })
        .catch(function (e) { pointStatus.textContent = '没有保存：' + e.message; });
    });
  }
  document.querySelectorAll('.remove-point').forEach(function (button) {
    button.addEventListener('click', function () {
      post(root.getAttribute('data-points-url') + '?at=' + button.getAttribute('data-at'), 'DELETE')
        .then(function () { window.location.reload(); })
        .catch(function (e) { pointStatus.textContent = '没有删除：' + e.message; });
    });
  });
  document.querySelectorAll('#points tbody tr[data-at]').forEach(function (row) {
    row.addEventListener('click', function (event) {
      if (video && event.target.tagName !== 'BUTTON') video.currentTime = parseFloat(row.getAttribute('data-at'));
    });
  });

  var upload = document.getElementById('upload');
  var fileInput = document.getElementById('file');
  var progress = document.getElementById('upload-progress');
  var uploadStatus = document.getElementById('upload-status');
  if (upload && fileInput) {
    upload.addEventListener('click', function () {
      var file = fileInput.files[0];
      if (!file) { uploadStatus.textContent = '请先选择文件。'; return; }
      if (!window.classboxUpload) { uploadStatus.textContent = '上传组件没有加载。'; return; }
      upload.disabled = true;
      progress.hidden = false;
      uploadStatus.textContent = '正在上传…';
      window.classboxUpload(file, {
        csrf: csrf,
        onProgress: function (done, total) {
          progress.max = total || 1;
          progress.value = done;
          uploadStatus.textContent = '已上传 ' + Math.round(100 * done / (total || 1)) + '%';
        }
      }).then(function (stored) {
        return post(root.getAttribute('data-files-url'), 'POST', {
          sha256: stored.sha256, size: stored.size, media_type: stored.media_type, name: file.name,
          role: document.getElementById('role').value
        });
      }).then(function () { window.location.reload(); })
        .catch(function (e) { uploadStatus.textContent = '上传没有完成：' + e.message; upload.disabled = false; });
    });
  }
})();
