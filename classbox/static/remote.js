/* The phone remote: pair with a room by the code on its TV, then drive the room's screens and follow its state.
 *
 * Plain ES2017 for the browsers of cheap Android phones: no framework, nothing from outside the box, no inline
 * code or styles (the CSP is default-src 'self'). The room's state lives on the box; this page only shows it and
 * sends commands. It follows the room with a long poll (after=version) and, when the network drops, asks again
 * slower and slower (never faster than BACKOFF_MS allows) until the box answers.
 */
(function () {
  'use strict';

  const POLL_WAIT_S = 25;
  const POLL_TIMEOUT_MS = (POLL_WAIT_S + 10) * 1000;
  const REQUEST_TIMEOUT_MS = 10000;
  const COMMAND_TRIES = 3;           // a command lost on the way is sent again with the same number
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];  // then every 15 s, for as long as the page is open
  const QUICK_ANSWER_MS = 150;       // an answer this fast that changed nothing means the box did not wait
  const MAX_QUEUED = 3;
  const ERROR_SHOWN_MS = 12000;
  const STORE = {
    client: 'classbox.remote.client',
    n: 'classbox.remote.n',
    pairing: 'classbox.remote.pairing'
  };
  const ROLE_NAMES = {
    video: '视频',
    task_sheet: '学习任务单',
    exercise: '课后练习',
    courseware: '课件',
    lesson_plan: '教学设计',
    textbook: '教材',
    cover: '封面'
  };
  const OFFLINE = '无法连接到教学盒子，请检查手机是否连着学校的无线网络';
  // The box answers in English for the technician; the teacher reads Chinese.
  const MESSAGES = [
    [/wrong room code/, '教室码不对，请再看一下电视上显示的六位数字'],
    [/too many wrong codes/, '输错的次数太多了，请十分钟后再试'],
    [/not paired/, '请重新输入电视上显示的教室码'],
    [/no lesson is open/, '请先在“选择课程”里选一节课'],
    [/no later pause point/, '后面没有暂停点了'],
    [/no earlier pause point/, '前面没有暂停点了'],
    [/no document is shown/, '电视上没有在显示文档'],
    [/no pause point with a prompt/, '这节课没有提示'],
    [/is not on this box/, '这节课不在盒子上，或者还没有下载完'],
    [/^note: at most/, '提示最多 60 个字'],
    [/^no pause point at/, '这个暂停点已经删除了'],
    [/^no room /, '盒子上没有这个教室，请重新选择教室'],
    [/^page: this document has pages/, '这个文档没有这一页'],
    [/^asset: /, '这个文件不能在电视上显示'],
    [/^seek: /, '快进快退出错了，请再试一次']
  ];

  const COMMANDS = {
    play: function () { return ['play', {}]; },
    pause: function () { return ['pause', {}]; },
    'seek-back': function () { return ['seek', { by: -10 }]; },
    'seek-forward': function () { return ['seek', { by: 10 }]; },
    'prev-point': function () { return ['seek', { to: 'previous' }]; },
    'next-point': function () { return ['seek', { to: 'next' }]; },
    'prompt-show': function () { return ['prompt', { show: true }]; },
    'prompt-hide': function () { return ['prompt', { show: false }]; },
    stop: function () { return ['stop', {}]; },
    'add-point': function () {
      const note = $('note').value.trim();
      return ['add_point', note ? { note: note } : {}];
    },
    resume: function () { return state && state.lesson ? ['open', { lesson: state.lesson, start: 'resume' }] : null; },
    beginning: function () {
      return state && state.lesson ? ['open', { lesson: state.lesson, start: 'beginning' }] : null;
    },
    'page-prev': function () { return ['page', { step: -1 }]; },
    'page-next': function () { return ['page', { step: 1 }]; },
    'close-document': function () { return ['close_document', {}]; }
  };

  const body = document.body;
  let pairedRoom = null;   // the room this phone drives, once paired
  let state = null;        // the room's state as last shown
  let receivedAt = 0;      // Date.now() when `state` arrived, to count the position on
  let ticker = null;
  let lessons = null;      // the catalogue's lessons, once loaded
  const details = {};      // lesson id -> promise of the lesson with its assets
  let shownDetails = null; // the lesson whose documents #documents shows
  let queue = Promise.resolve();
  let queued = 0;
  let errorTimer = null;
  const follower = { generation: 0, version: null, failures: 0, request: null, wakeSleep: null };
  const memory = {};

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ------------------------------------------------------------------ remembered on the phone

  function readStore(key) {
    try {
      const value = window.localStorage.getItem(key);
      if (value !== null) return value;
    } catch (e) { /* storage off (private mode): keep it in memory for this page */ }
    return Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : null;
  }

  function writeStore(key, value) {
    memory[key] = value;
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) { /* kept in memory */ }
  }

  function clientId() {
    let id = readStore(STORE.client);
    if (!id) {
      const bytes = new Uint8Array(12);
      if (window.crypto && window.crypto.getRandomValues) window.crypto.getRandomValues(bytes);
      else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
      id = 'phone-' + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join('');
      writeStore(STORE.client, id);
    }
    return id;
  }

  function nextNumber() {
    // Read afresh each time: another tab of this phone shares the count.
    const n = (parseInt(readStore(STORE.n), 10) || 0) + 1;
    writeStore(STORE.n, String(n));
    return n;
  }

  function savedPairing() {
    try {
      const pairing = JSON.parse(readStore(STORE.pairing) || 'null');
      if (pairing && typeof pairing.room === 'string' && pairing.expires * 1000 > Date.now()) return pairing;
    } catch (e) { /* unreadable: not paired */ }
    return null;
  }

  // ------------------------------------------------------------------ talking to the box

  function NetworkError(message) { this.message = message; }

  function roomUrl(room) { return '/api/v1/rooms/' + encodeURIComponent(room); }

  /* Resolve with {status, ok, data} for any answer of the box (4xx too); reject with NetworkError when there is
   * none. `handle`, if given, gets the AbortController so the request can be cut short. */
  function fetchJSON(method, url, payload, timeoutMs, handle) {
    const controller = window.AbortController ? new AbortController() : null;
    if (handle) handle.controller = controller;
    const init = { method: method, headers: { Accept: 'application/json' }, credentials: 'same-origin',
      cache: 'no-store' };
    if (controller) init.signal = controller.signal;
    if (payload !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    return new Promise(function (resolve, reject) {
      const timer = setTimeout(function () {
        if (controller) controller.abort();
        reject(new NetworkError('timeout'));
      }, timeoutMs);
      fetch(url, init).then(function (response) {
        return response.text().then(function (text) {
          let data = {};
          try {
            data = text ? JSON.parse(text) : {};
          } catch (e) {
            data = { error: text.slice(0, 200) };
          }
          clearTimeout(timer);
          resolve({ status: response.status, ok: response.ok, data: data || {} });
        });
      }).catch(function (err) {
        clearTimeout(timer);
        reject(new NetworkError(String(err)));
      });
    });
  }

  function delay(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function backoff(failures) { return BACKOFF_MS[Math.min(failures, BACKOFF_MS.length) - 1]; }

  function translate(data, status) {
    const message = (data && data.error) || '';
    for (const [pattern, text] of MESSAGES) {
      if (pattern.test(message)) return text;
    }
    return message || '出错了（' + status + '），请再试一次';
  }

  // ------------------------------------------------------------------ messages

  function showError(text) {
    const box = $('error');
    box.textContent = text;
    box.hidden = false;
    clearTimeout(errorTimer);
    // Over the controls it goes by itself; on the pairing form it stays until the next try.
    if (body.dataset.view === 'controls') errorTimer = setTimeout(clearError, ERROR_SHOWN_MS);
  }

  function clearError() {
    clearTimeout(errorTimer);
    $('error').hidden = true;
    $('error').textContent = '';
  }

  function setOffline(offline) { $('offline').hidden = !offline; }

  // ------------------------------------------------------------------ views: pairing form or controls

  function setView(view) {
    body.dataset.view = view;
    $('loading').hidden = true;
    $('pair-form').hidden = view !== 'pair';
    $('controls').hidden = view !== 'controls';
    $('switch-room').hidden = view !== 'controls';
  }

  function showPairForm(room) {
    stopFollowing();
    pairedRoom = null;
    $('room-name').textContent = '';
    setView('pair');
    if (room) selectRoom(room);
    const saved = savedPairing();
    $('back-to-controls').hidden = !saved;
  }

  function showControls(room) {
    if (pairedRoom !== room) {
      state = null;
      render(emptyState(room), true);
    }
    pairedRoom = room;
    $('room-name').textContent = room;
    setView('controls');
    follow(room);
    loadLessons();
  }

  function emptyState(room) {
    return { room: room, version: -1, lesson: null, title: null, playing: false, position: 0, document: null,
      page: 0, prompt: null, points: [], offer: null, finished: false };
  }

  // ------------------------------------------------------------------ pairing

  function selectRoom(room) {
    const select = $('room');
    if (!Array.prototype.some.call(select.options, function (o) { return o.value === room; })) {
      select.appendChild(new Option(room, room));  // from the QR code, before the list has come
    }
    select.value = room;
  }

  async function loadRooms(preferred) {
    for (let failures = 1; ; failures++) {
      let result = null;
      try {
        result = await fetchJSON('GET', '/api/v1/rooms', undefined, REQUEST_TIMEOUT_MS);
      } catch (e) { /* below */ }
      if (result && result.ok && Array.isArray(result.data.rooms)) {
        fillRooms(result.data.rooms, $('room').value || preferred);
        return;
      }
      await delay(backoff(failures));
    }
  }

  function fillRooms(rooms, preferred) {
    const select = $('room');
    select.textContent = '';
    for (const room of rooms) {
      select.appendChild(new Option(room.class ? room.name + '（' + room.class + '）' : room.name, room.name));
    }
    if (preferred && rooms.some(function (r) { return r.name === preferred; })) select.value = preferred;
  }

  function normalizeCode(text) {
    // Chinese keyboards may type full-width digits.
    return String(text || '').replace(/[\uff10-\uff19]/g, function (d) {
      return String.fromCharCode(d.charCodeAt(0) - 0xfee0);
    }).replace(/\s+/g, '');
  }

  async function pair(room, code) {
    code = normalizeCode(code);
    if (!room) {
      showError('请先选择教室');
      return false;
    }
    if (!/^[0-9]{6}$/.test(code)) {
      showError('请输入电视上显示的六位数字教室码');
      return false;
    }
    const button = $('pair');
    button.disabled = true;
    button.textContent = '正在连接…';
    let result;
    try {
      result = await fetchJSON('POST', roomUrl(room) + '/pair', { code: code }, REQUEST_TIMEOUT_MS);
    } catch (e) {
      showError(OFFLINE);
      return false;
    } finally {
      button.disabled = false;
      button.textContent = '连接';
    }
    if (!result.ok) {
      showError(result.status === 409 ? '输错的次数太多了，请十分钟后再试' : translate(result.data, result.status));
      return false;
    }
    writeStore(STORE.pairing, JSON.stringify({ room: room, expires: result.data.expires }));
    clearError();
    $('code').value = '';
    showControls(room);
    return true;
  }

  function forgetPairing() { writeStore(STORE.pairing, null); }

  // ------------------------------------------------------------------ following the room

  function stopFollowing() {
    follower.generation += 1;
    wakeFollower();
    stopTicker();
  }

  /* Cut a backoff sleep or a parked request short so the room is asked again now (the phone woke up, the network
   * came back). */
  function wakeFollower() {
    follower.failures = 0;
    if (follower.wakeSleep) follower.wakeSleep();
    const request = follower.request;
    if (request && request.controller) {
      request.woken = true;
      request.controller.abort();
    }
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        if (follower.wakeSleep === done) follower.wakeSleep = null;
        resolve();
      }
      follower.wakeSleep = done;
    });
  }

  async function follow(room) {
    wakeFollower();  // a loop still running for another room ends now
    const generation = ++follower.generation;
    follower.version = null;
    follower.failures = 0;
    const current = function () { return generation === follower.generation; };
    while (current()) {
      const after = follower.version;
      const url = roomUrl(room) + '/state?kind=phone&screen=' + encodeURIComponent(clientId()) +
        (after === null ? '' : '&after=' + after + '&wait=' + POLL_WAIT_S);
      const request = {};
      follower.request = request;
      const asked = Date.now();
      let result;
      try {
        result = await fetchJSON('GET', url, undefined, POLL_TIMEOUT_MS, request);
      } catch (e) {
        if (!current()) return;
        if (request.woken) continue;  // cut short on purpose: ask again at once
        follower.failures += 1;
        setOffline(follower.failures >= 2);
        await sleep(backoff(follower.failures));
        continue;
      } finally {
        if (follower.request === request) follower.request = null;
      }
      if (!current()) return;
      if (result.ok) {
        follower.failures = 0;
        setOffline(false);
        const s = result.data;
        // An older answer than the command's own (they crossed on the way) is not shown; a version below the
        // one asked after means the box restarted and counts from the start again.
        if (!(state && after !== null && after < s.version && s.version < state.version)) render(s, true);
        follower.version = s.version;
        if (s.retry_after > 0) await sleep(s.retry_after * 1000);
        else if (after !== null && s.version === after && Date.now() - asked < QUICK_ANSWER_MS) await sleep(1000);
      } else if (result.status === 404) {
        forgetPairing();
        showPairForm('');
        showError(translate(result.data, 404));
        return;
      } else {
        follower.failures += 1;
        await sleep(backoff(follower.failures));
      }
    }
  }

  // ------------------------------------------------------------------ commands

  function command(cmd, args, button, done) {
    if (!pairedRoom) return;
    if (queued >= MAX_QUEUED) {
      showError('正在发送前面的操作，请稍候');
      return;
    }
    const room = pairedRoom;
    queued += 1;
    if (button) button.classList.add('sending');
    // One at a time and in order: two quick taps arrive as the teacher made them.
    queue = queue.then(function () {
      return pairedRoom === room ? send(room, cmd, args) : false;
    }).then(function (ok) {
      if (ok && done) done();
    }, function () { /* reported in send */ }).then(function () {
      queued -= 1;
      if (button) button.classList.remove('sending');
    });
  }

  async function send(room, cmd, args) {
    const payload = { client: clientId(), n: nextNumber(), cmd: cmd, args: args };
    for (let attempt = 1; ; attempt++) {
      let result;
      try {
        result = await fetchJSON('POST', roomUrl(room) + '/commands', payload, REQUEST_TIMEOUT_MS);
      } catch (e) {
        if (attempt >= COMMAND_TRIES) {
          showError(OFFLINE);
          return false;
        }
        // The same number again: the box applies a command once however often it arrives.
        await delay(attempt * 1000);
        continue;
      }
      if (result.ok) {
        clearError();
        if (pairedRoom === room) render(result.data, false);
        return true;
      }
      if (result.status === 403 && result.data.code === 'not_paired') {
        forgetPairing();
        showPairForm(room);
        showError(translate(result.data, 403));
        return false;
      }
      showError(translate(result.data, result.status));
      return false;
    }
  }

  function onControlsClick(event) {
    const button = event.target.closest('button');
    if (!button || button.disabled || !$('controls').contains(button)) return;
    const d = button.dataset;
    if (d.cmd && COMMANDS[d.cmd]) {
      const made = COMMANDS[d.cmd]();
      if (made) command(made[0], made[1], button, d.cmd === 'add-point' ? function () { $('note').value = ''; } : null);
    } else if (d.lesson) {
      command('open', { lesson: d.lesson }, button, function () { window.scrollTo(0, 0); });
    } else if (d.asset !== undefined && d.page !== undefined) {
      command('document', { asset: parseInt(d.asset, 10), page: parseInt(d.page, 10) }, button);
    } else if (d.removePoint !== undefined) {
      command('remove_point', { at: parseFloat(d.removePoint) }, button);
    }
  }

  // ------------------------------------------------------------------ showing the state

  function render(s, fromFollower) {
    if (!fromFollower && state && s.room === state.room && s.version <= state.version) return;
    const lessonChanged = !state || state.lesson !== s.lesson;
    state = s;
    receivedAt = Date.now();
    body.dataset.lesson = s.lesson ? 'open' : 'none';
    body.dataset.playing = s.playing ? 'yes' : 'no';
    $('lesson-title').textContent = s.lesson ? (s.title || s.lesson) : '未选择课程';
    $('status').textContent = s.playing ? '播放中' : s.lesson ? '已暂停' : '未开始';
    $('status').className = s.playing ? 'playing' : s.lesson ? 'paused' : 'idle';
    const prompt = $('prompt');
    prompt.textContent = s.prompt || '';
    prompt.hidden = !s.prompt;
    $('offer').hidden = s.offer === null || s.offer === undefined;
    if (s.offer !== null && s.offer !== undefined) $('offer-at').textContent = clock(s.offer);
    renderPoints(s);
    if (lessonChanged) loadDocuments(s.lesson);
    renderDocumentState(s);
    markCurrentLesson(s.lesson);
    showPosition();
    if (s.playing) startTicker();
    else stopTicker();
  }

  function clock(seconds) {
    const whole = Math.max(0, Math.floor(seconds || 0));
    const m = Math.floor(whole / 60);
    const sec = whole % 60;
    return m + ':' + (sec < 10 ? '0' : '') + sec;
  }

  function positionNow() {
    if (!state) return 0;
    return state.position + (state.playing ? (Date.now() - receivedAt) / 1000 : 0);
  }

  function showPosition() {
    const text = !state || !state.lesson ? '' : state.finished ? '本课视频已播完' : '已播放 ' + clock(positionNow());
    $('position').textContent = text;
  }

  function startTicker() { if (!ticker) ticker = setInterval(showPosition, 500); }

  function stopTicker() {
    if (ticker) clearInterval(ticker);
    ticker = null;
  }

  /* Write a pause point's time as the box's JSON does (3.0, 6.5), so data-remove-point reads the same on both. */
  function pointKey(at) { return Number.isInteger(at) ? at.toFixed(1) : String(at); }

  function renderPoints(s) {
    const list = $('points');
    list.textContent = '';
    if (!s.points || !s.points.length) {
      list.appendChild(el('li', 'empty', s.lesson ? '这节课没有暂停点' : ''));
      return;
    }
    for (const point of s.points) {
      const item = el('li', point.own ? 'own' : '');
      item.appendChild(el('span', 'at', clock(point.at)));
      const text = el('span', 'text', point.prompt);
      if (point.own) text.appendChild(el('small', 'tag', '自己添加'));
      item.appendChild(text);
      const remove = el('button', 'remove', '删除');
      remove.type = 'button';
      remove.dataset.removePoint = pointKey(point.at);
      remove.setAttribute('aria-label', '删除 ' + clock(point.at) + ' 的暂停点');
      item.appendChild(remove);
      list.appendChild(item);
    }
  }

  // ------------------------------------------------------------------ documents of the open lesson

  function lessonDetails(id) {
    if (!details[id]) {
      details[id] = fetchJSON('GET', '/api/v1/lessons/' + encodeURIComponent(id), undefined, REQUEST_TIMEOUT_MS)
        .then(function (result) {
          if (!result.ok) throw new Error(translate(result.data, result.status));
          return result.data;
        });
      details[id].catch(function () { delete details[id]; });  // ask again next time
    }
    return details[id];
  }

  function loadDocuments(id) {
    const box = $('documents');
    shownDetails = null;
    box.textContent = '';
    if (!id) return;
    box.appendChild(el('p', 'note', '正在加载文档…'));
    lessonDetails(id).then(function (lesson) {
      if (!state || state.lesson !== id) return;
      shownDetails = lesson;
      renderDocuments(lesson);
      renderDocumentState(state);
    }, function () {
      if (!state || state.lesson !== id) return;
      box.textContent = '';
      const retry = el('button', 'wide', '文档加载失败，点这里重试');
      retry.type = 'button';
      retry.addEventListener('click', function () { loadDocuments(id); });
      box.appendChild(retry);
    });
  }

  function renderDocuments(lesson) {
    const box = $('documents');
    box.textContent = '';
    let any = false;
    (lesson.assets || []).forEach(function (asset, index) {
      if (!asset.pages || !asset.pages.length) return;
      any = true;
      const group = el('div', 'doc-group');
      group.appendChild(el('h4', '', ROLE_NAMES[asset.role] || asset.role));
      const pages = el('div', 'pages');
      asset.pages.forEach(function (page, p) {
        const button = el('button', 'page', '第' + (p + 1) + '页');
        button.type = 'button';
        button.dataset.asset = String(index);
        button.dataset.page = String(p);
        pages.appendChild(button);
      });
      group.appendChild(pages);
      box.appendChild(group);
    });
    if (!any) box.appendChild(el('p', 'note', '这节课没有可以在电视上显示的文档'));
  }

  function renderDocumentState(s) {
    const showing = s.lesson && s.document !== null && s.document !== undefined;
    $('document-nav').className = showing ? 'showing' : '';
    const buttons = $('documents').querySelectorAll('button[data-asset]');
    for (const button of buttons) {
      const on = showing && Number(button.dataset.asset) === s.document && Number(button.dataset.page) === s.page;
      button.classList.toggle('current', on);
      button.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
    if (!showing) {
      $('page-indicator').textContent = s.lesson ? '电视上现在是视频' : '';
      return;
    }
    let text = '第 ' + (s.page + 1) + ' 页';
    const asset = shownDetails && shownDetails.id === s.lesson ? (shownDetails.assets || [])[s.document] : null;
    if (asset && asset.pages) text = (ROLE_NAMES[asset.role] || asset.role) + '　第 ' + (s.page + 1) + ' / ' +
      asset.pages.length + ' 页';
    $('page-indicator').textContent = '电视正在显示：' + text;
  }

  // ------------------------------------------------------------------ choosing a lesson

  async function loadLessons() {
    if (lessons) return;
    const note = $('lessons-note');
    note.hidden = false;
    note.textContent = '正在加载课程…';
    let result = null;
    try {
      result = await fetchJSON('GET', '/api/v1/catalog', undefined, REQUEST_TIMEOUT_MS);
    } catch (e) { /* below */ }
    if (!result || !result.ok || !Array.isArray(result.data.lessons)) {
      note.textContent = '课程列表加载失败。';
      const retry = el('button', 'wide', '重试');
      retry.type = 'button';
      retry.addEventListener('click', function () { loadLessons(); });
      note.appendChild(retry);
      return;
    }
    lessons = result.data.lessons;
    note.hidden = !!lessons.length;
    note.textContent = lessons.length ? '' : '盒子上还没有课程，请联系技术员导入课程。';
    renderLessons();
  }

  function lessonMeta(lesson) {
    const path = lesson.path || {};
    return [path.grade, path.subject, path.unit].filter(Boolean).join(' · ') || lesson.section || '';
  }

  function renderLessons() {
    const list = $('lessons');
    list.textContent = '';
    for (const lesson of lessons) {
      const item = el('li');
      const button = el('button', 'lesson', lesson.title);
      button.type = 'button';
      button.dataset.lesson = lesson.id;
      item.appendChild(button);
      const meta = lessonMeta(lesson);
      if (meta) item.appendChild(el('span', 'meta', meta));
      item.dataset.search = (lesson.title + ' ' + meta).toLowerCase();
      list.appendChild(item);
    }
    filterLessons();
    markCurrentLesson(state && state.lesson);
  }

  function filterLessons() {
    const words = $('lesson-search').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    for (const item of $('lessons').children) {
      const text = item.dataset.search || '';
      item.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    }
  }

  function markCurrentLesson(id) {
    for (const button of $('lessons').querySelectorAll('button[data-lesson]')) {
      const on = button.dataset.lesson === id;
      button.classList.toggle('current', on);
      if (on) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }
  }

  // ------------------------------------------------------------------ start

  function boot() {
    $('pair-form').addEventListener('submit', function (event) {
      event.preventDefault();
      pair($('room').value || body.dataset.room, $('code').value);
    });
    $('controls').addEventListener('click', onControlsClick);
    $('lesson-search').addEventListener('input', filterLessons);
    $('switch-room').addEventListener('click', function () {
      clearError();
      showPairForm(pairedRoom);
    });
    $('back-to-controls').addEventListener('click', function () {
      const saved = savedPairing();
      clearError();
      if (saved) showControls(saved.room);
    });
    // A phone that slept or lost the network asks at once when it is back, not at the end of its backoff.
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && pairedRoom) wakeFollower();
    });
    window.addEventListener('online', function () { if (pairedRoom) wakeFollower(); });
    window.addEventListener('pageshow', function (event) { if (event.persisted && pairedRoom) wakeFollower(); });

    const room = body.dataset.room || '';
    const code = body.dataset.code || '';
    const saved = savedPairing();
    loadRooms(room || (saved && saved.room) || '');
    if (room && code) {
      // Opened from the TV's QR code: pair at once, then drop the code from the address (it changes daily).
      showPairForm(room);
      $('code').value = normalizeCode(code);
      pair(room, code).then(function (ok) {
        if (ok && window.history && history.replaceState) {
          history.replaceState(null, '', location.pathname + '?room=' + encodeURIComponent(room));
        }
      });
    } else if (saved && (!room || room === saved.room)) {
      showControls(saved.room);
    } else {
      showPairForm(room || (saved && saved.room) || '');
    }
  }

  boot();
}());
