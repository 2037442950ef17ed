/* The classroom TV page: browse the box's lessons and play them, driven by a TV remote's D-pad.
 *
 * Plain ES2017 without optional chaining or other recent syntax: cheap Android TV boxes run old
 * Chromium WebViews. No framework and no build step; the CSP allows only this file as script.
 *
 * Screens form a stack (home → grades → subjects → lessons → lesson → player | document). Escape,
 * Backspace or a remote's Back key pops one screen (closing an overlay first); each screen keeps
 * the index of its focused tile so that going back lands where the teacher was.
 */
(function () {
  'use strict';

  var body = document.body;
  var BOX_URL = body.getAttribute('data-box-url') || location.href;

  var LEVELS = [
    { facet: 'section', screen: 'home', heading: '请选择栏目' },
    { facet: 'grade', screen: 'grades', heading: '请选择年级' },
    { facet: 'subject', screen: 'subjects', heading: '请选择学科' }
  ];
  var DOCUMENT_ROLES = ['task_sheet', 'exercise', 'courseware', 'lesson_plan', 'textbook'];
  var ROLE_NAMES = {
    video: '视频',
    task_sheet: '学习任务单',
    exercise: '课后练习',
    courseware: '课件',
    lesson_plan: '教学设计',
    textbook: '教材',
    cover: '封面'
  };
  var PATH_LEVELS = ['stage', 'grade', 'subject', 'edition', 'volume', 'unit', 'lesson', 'period'];
  var FETCH_TIMEOUT_MS = 15000;
  var PAUSE_EARLY_S = 0.05;   // stop this much before a pause point so the frame shown is the marked one
  var CHECK_EVERY_MS = 100;   // timeupdate alone comes only every ~250 ms
  var SEEK_STEP_S = 10;
  var UI_HIDE_MS = 4000;

  function $(id) { return document.getElementById(id); }

  var main = $('main');
  var crumbs = $('crumbs');
  var backButton = $('back-button');
  var loading = $('loading');
  var message = $('message');
  var playerLayer = $('player');
  var video = $('video');
  var docLayer = $('document');
  var docImage = $('doc-image');

  var stack = [];          // screens, the last one shown
  var loadToken = 0;       // bumps on every navigation so late answers are dropped
  var loadingTimer = null;
  var messageState = null; // the message's focus group: {items, index, onBack}
  var positions = {};      // video url → seconds where the teacher left it
  var docPages = {};       // document url → page index last shown

  // ------------------------------------------------------------------ small helpers

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function copy(obj) {
    var out = {};
    for (var k in obj) if (Object.prototype.hasOwnProperty.call(obj, k)) out[k] = obj[k];
    return out;
  }

  function query(filters) {
    var parts = [];
    for (var k in filters) {
      if (Object.prototype.hasOwnProperty.call(filters, k)) {
        parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(filters[k]));
      }
    }
    return parts.length ? '?' + parts.join('&') : '';
  }

  function twoDigits(n) { return (n < 10 ? '0' : '') + n; }

  /* Format seconds as 03:07, or 1:03:07 past an hour. */
  function clock(seconds) {
    var s = isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
    var h = Math.floor(s / 3600);
    return (h ? h + ':' : '') + twoDigits(Math.floor((s % 3600) / 60)) + ':' + twoDigits(s % 60);
  }

  function setOverlayState() {
    var name = '';
    if (!message.hidden) name = 'message';
    else if (!$('pause-overlay').hidden) name = 'pause';
    else if (!$('end-overlay').hidden) name = 'ended';
    body.setAttribute('data-overlay', name);
  }

  function top() { return stack[stack.length - 1]; }

  // ------------------------------------------------------------------ fetching

  function HttpError(status) {
    this.status = status;
  }

  function getJSON(url) {
    return new Promise(function (resolve, reject) {
      var settled = false;
      var timer = setTimeout(function () {
        if (settled) return;
        settled = true;
        reject(new Error('timeout'));
      }, FETCH_TIMEOUT_MS);
      function finish(fn, value) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn(value);
      }
      fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' }).then(function (response) {
        return response.json().then(function (data) {
          return { response: response, data: data };
        }, function () {
          return { response: response, data: null };
        });
      }).then(function (result) {
        if (result.response.ok && result.data) finish(resolve, result.data);
        else finish(reject, new HttpError(result.response.status));
      }, function (err) {
        finish(reject, err);
      });
    });
  }

  function showLoading() {
    clearTimeout(loadingTimer);
    body.setAttribute('data-loading', 'true');
    // A LAN answer usually comes at once; only say "loading" when it does not, to avoid a flash.
    loadingTimer = setTimeout(function () { loading.hidden = false; }, 250);
  }

  function hideLoading() {
    clearTimeout(loadingTimer);
    loading.hidden = true;
    body.removeAttribute('data-loading');
  }

  function isLoading() { return body.hasAttribute('data-loading'); }

  function cancelLoading() {
    loadToken += 1;
    hideLoading();
  }

  /* Fetch url, then call onData with the answer unless the teacher navigated away meanwhile. */
  function load(url, onData) {
    var token = ++loadToken;
    showLoading();
    getJSON(url).then(function (data) {
      if (token !== loadToken) return;
      hideLoading();
      onData(data);
    }, function (err) {
      if (token !== loadToken) return;
      hideLoading();
      showLoadError(err, function () { load(url, onData); });
    });
  }

  function showLoadError(err, retry) {
    if (err instanceof HttpError && err.status === 404) {
      showMessage('找不到这节课', '它可能已经从教学盒子里删除了。请返回重新选择。',
        [{ label: '返回', action: hideMessage }]);
    } else if (err instanceof HttpError) {
      showMessage('教学盒子出错了', '请稍后再试；如果一直出错，请联系技术员。（错误代码 ' + err.status + '）',
        [{ label: '重试', action: retry }, { label: '返回', action: hideMessage }]);
    } else {
      showMessage('无法连接到教学盒子，请检查网络', '请确认电视和教学盒子连在同一个网络上，然后按 确定 键重试。',
        [{ label: '重试', action: retry }, { label: '返回', action: hideMessage }]);
    }
  }

  // ------------------------------------------------------------------ focus

  /* Return the elements the arrows move between right now, and where the index is kept. */
  function focusGroup() {
    if (messageState) return messageState;
    var entry = top();
    if (!entry) return null;
    if (entry.screen === 'player') {
      if (!$('end-overlay').hidden) return player.endGroup;
      if (!$('pause-overlay').hidden) return { items: [$('pause-continue')], index: 0 };
      return null;
    }
    if (entry.screen === 'document') return null;
    return entry;
  }

  function markFocused(node) {
    var old = document.querySelectorAll('.is-focused');
    for (var i = 0; i < old.length; i++) if (old[i] !== node) old[i].classList.remove('is-focused');
    if (!node) return;
    node.classList.add('is-focused');
    try {
      node.focus({ preventScroll: true });
    } catch (e) {
      node.focus();
    }
    if (node.scrollIntoView) {
      try {
        node.scrollIntoView({ block: 'nearest', inline: 'nearest' });
      } catch (e) {
        node.scrollIntoView(false);
      }
    }
  }

  function focusIndex(group, index) {
    if (!group || !group.items || !group.items.length) return;
    if (index < 0) index = 0;
    if (index >= group.items.length) index = group.items.length - 1;
    group.index = index;
    markFocused(group.items[index]);
  }

  function refocus() {
    var group = focusGroup();
    if (group && group.items && group.items.length) {
      focusIndex(group, group.index || 0);
      return;
    }
    markFocused(null);
    var entry = top();
    if (entry && entry.screen === 'player') playerLayer.focus();
    else if (entry && entry.screen === 'document') docLayer.focus();
  }

  function center(rect) {
    return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
  }

  /* Return the index of the item the arrow leads to from items[index], spatially. */
  function neighbour(items, index, direction) {
    var here = items[index].getBoundingClientRect();
    var c = center(here);
    var best = -1;
    var bestGap = Infinity;
    var bestOffset = Infinity;
    var i;
    if (direction === 'left' || direction === 'right') {
      for (i = 0; i < items.length; i++) {
        if (i === index) continue;
        var r = items[i].getBoundingClientRect();
        var sameRow = r.top < here.bottom - 2 && r.bottom > here.top + 2;
        var dx = center(r).x - c.x;
        if (!sameRow || (direction === 'right' ? dx <= 1 : dx >= -1)) continue;
        if (Math.abs(dx) < bestGap) { bestGap = Math.abs(dx); best = i; }
      }
      if (best >= 0) return best;
      // At a row's end, continue in reading order, as one expects of a list that wraps.
      var next = direction === 'right' ? index + 1 : index - 1;
      return next >= 0 && next < items.length ? next : index;
    }
    for (i = 0; i < items.length; i++) {
      if (i === index) continue;
      var rect = items[i].getBoundingClientRect();
      var gap = direction === 'down' ? rect.top - here.bottom : here.top - rect.bottom;
      if (gap < -2) continue;
      var offset = Math.abs(center(rect).x - c.x);
      // Nearest row first (a few pixels of slack), then the nearest column within it.
      if (gap < bestGap - 4 || (Math.abs(gap - bestGap) <= 4 && offset < bestOffset)) {
        bestGap = gap;
        bestOffset = offset;
        best = i;
      }
    }
    return best >= 0 ? best : index;
  }

  function moveFocus(direction) {
    var group = focusGroup();
    if (!group || !group.items || !group.items.length) return;
    var index = group.index || 0;
    if (index >= group.items.length) index = group.items.length - 1;
    focusIndex(group, neighbour(group.items, index, direction));
  }

  function activateFocused() {
    var group = focusGroup();
    if (!group || !group.items || !group.items.length) return;
    var node = group.items[group.index || 0];
    if (node && node.activate) node.activate();
  }

  /* Make node a focusable item of group that runs action on Enter, click or tap. */
  function item(group, node, action) {
    var index = group.items.length;
    group.items.push(node);
    node.activate = action;
    node.addEventListener('click', function (event) {
      event.preventDefault();
      if (focusGroup() !== group) return;
      focusIndex(group, index);
      action();
    });
    return node;
  }

  // ------------------------------------------------------------------ messages (errors, empty)

  function showMessage(title, text, buttons, onBack) {
    $('message-title').textContent = title;
    $('message-text').textContent = text;
    var actions = $('message-actions');
    clear(actions);
    messageState = { items: [], index: 0, onBack: onBack || hideMessage };
    var state = messageState;
    buttons.forEach(function (b) {
      actions.appendChild(item(state, el('button', 'tile action', b.label), function () {
        if (b.action !== hideMessage) hideMessage();
        b.action();
      }));
    });
    message.hidden = false;
    setOverlayState();
    focusIndex(messageState, 0);
  }

  function hideMessage() {
    message.hidden = true;
    messageState = null;
    setOverlayState();
    refocus();
  }

  // ------------------------------------------------------------------ the stack of screens

  function push(entry) {
    var current = top();
    if (current) leave(current);
    stack.push(entry);
    guardHistory();
    show(entry);
  }

  function replaceAll(entry) {
    while (stack.length) leave(stack.pop());
    stack.push(entry);
    show(entry);
  }

  /* Go back one screen; return false at the home screen. */
  function popScreen() {
    if (stack.length <= 1) return false;
    leave(stack.pop());
    show(top());
    return true;
  }

  /* Close what is in front (message, loading, player overlay) or go back one screen. */
  function back() {
    if (messageState) {
      messageState.onBack();
      return;
    }
    if (isLoading()) {
      cancelLoading();
      return;
    }
    var entry = top();
    if (entry && entry.screen === 'player' && player.closeOverlay()) return;
    popScreen();
  }

  // A phone's or TV browser's own Back button walks the history, not our keys. While away from the
  // home screen one extra "guard" entry sits on top of the page's; going back from it is taken as
  // our back(), and the guard is put back until home is reached, so the next Back leaves the page.
  // Our own keys never touch the history, so a quick series of keys cannot race a history step.
  var guarded = !!(history.state && history.state.classbox === 'guard');

  function guardHistory() {
    if (guarded) return;
    try {
      history.pushState({ classbox: 'guard' }, '');
      guarded = true;
    } catch (e) { /* the history is a convenience; the keys work without it */ }
  }

  window.addEventListener('popstate', function (event) {
    if (event.state && event.state.classbox === 'guard') {
      guarded = true;  // the browser's Forward: nothing to redo
      return;
    }
    guarded = false;
    back();
    if (stack.length > 1 || messageState) guardHistory();
  });

  function leave(entry) {
    if (entry.screen === 'player') player.close();
    if (entry.screen === 'document') docViewer.close();
  }

  function show(entry) {
    body.setAttribute('data-screen', entry.screen);
    playerLayer.hidden = entry.screen !== 'player';
    docLayer.hidden = entry.screen !== 'document';
    backButton.hidden = stack.length <= 1;
    renderCrumbs(entry.crumbs || []);
    if (entry.screen === 'player') {
      player.open(entry);
    } else if (entry.screen === 'document') {
      docViewer.open(entry);
    } else {
      entry.items = [];
      clear(main);
      main.scrollTop = 0;
      RENDER[entry.screen](entry);
    }
    setOverlayState();
    refocus();
  }

  function renderCrumbs(parts) {
    clear(crumbs);
    var all = ['首页'].concat(parts);
    all.forEach(function (part, i) {
      if (i) crumbs.appendChild(el('span', 'sep', '›'));
      crumbs.appendChild(el('span', i === all.length - 1 ? 'crumb current' : 'crumb', part));
    });
  }

  // ------------------------------------------------------------------ browsing the catalogue

  /* Open the first level from levelIndex that has values for these filters, or the lesson list. */
  function openLevel(levelIndex, filters, crumbParts, replace) {
    load('/api/v1/catalog' + query(filters), function (data) {
      var entry = null;
      for (var i = levelIndex; i < LEVELS.length; i++) {
        var values = (data.facets && data.facets[LEVELS[i].facet]) || [];
        if (values.length || i === 0) {
          entry = { screen: LEVELS[i].screen, level: i, filters: filters, crumbs: crumbParts, data: data, index: 0 };
          break;
        }
      }
      if (!entry) entry = { screen: 'lessons', filters: filters, crumbs: crumbParts, data: data, index: 0 };
      if (replace) replaceAll(entry);
      else push(entry);
    });
  }

  function heading(text, note) {
    var h = el('div', 'heading');
    h.appendChild(el('h1', null, text));
    if (note) h.appendChild(el('p', 'note', note));
    main.appendChild(h);
  }

  function renderLevel(entry) {
    var level = LEVELS[entry.level];
    var data = entry.data;
    var values = (data.facets && data.facets[level.facet]) || [];
    if (entry.level === 0 && !data.total) {
      var empty = el('div', 'empty');
      empty.appendChild(el('h1', null, '还没有课程'));
      empty.appendChild(el('p', null, '这台教学盒子里还没有导入课程。'));
      empty.appendChild(el('p', null, '请联系技术员导入课程（用 U 盘导入，或连上网络后同步）。'));
      main.appendChild(empty);
      empty.appendChild(item(entry, el('button', 'tile action', '刷新'), start));
      return;
    }
    heading(level.heading, '共 ' + data.total + ' 节课');
    var grid = el('div', 'grid grid-choices');
    var listed = 0;
    values.forEach(function (v) {
      listed += v.count;
      var tile = el('button', 'tile choice');
      tile.type = 'button';
      tile.setAttribute('data-value', v.value);
      tile.appendChild(el('span', 'label', v.value));
      tile.appendChild(el('span', 'count', v.count + ' 节课'));
      grid.appendChild(item(entry, tile, function () { choose(entry, v.value); }));
    });
    if (listed < data.total) {
      // Some lessons have no value at this level (e.g. 专题教育 without a grade): list them all too.
      var all = el('button', 'tile choice all');
      all.type = 'button';
      all.setAttribute('data-value', '');
      all.appendChild(el('span', 'label', '全部课程'));
      all.appendChild(el('span', 'count', data.total + ' 节课'));
      grid.appendChild(item(entry, all, function () {
        push({ screen: 'lessons', filters: entry.filters, crumbs: entry.crumbs.concat(['全部课程']), data: data,
          index: 0 });
      }));
    }
    main.appendChild(grid);
  }

  function choose(entry, value) {
    var filters = copy(entry.filters);
    filters[LEVELS[entry.level].facet] = value;
    openLevel(entry.level + 1, filters, entry.crumbs.concat([value]));
  }

  function pathText(path) {
    var parts = [];
    PATH_LEVELS.forEach(function (k) {
      if (path && path[k]) parts.push(path[k]);
    });
    return parts.join(' · ');
  }

  /* Return what tells lessons of one list apart: unit, lesson and period, less what the title says. */
  function lessonMeta(lesson) {
    var path = lesson.path || {};
    var parts = [];
    ['unit', 'lesson', 'period'].forEach(function (k) {
      var v = path[k];
      if (v && lesson.title.indexOf(v) < 0 && parts.indexOf(v) < 0) parts.push(v);
    });
    return parts.join(' · ');
  }

  function roleOrder(role) {
    var i = DOCUMENT_ROLES.indexOf(role);
    return role === 'video' ? -1 : i < 0 ? DOCUMENT_ROLES.length : i;
  }

  function renderLessons(entry) {
    var lessons = entry.data.lessons || [];
    heading('请选择课程', '共 ' + lessons.length + ' 节课');
    if (!lessons.length) {
      main.appendChild(el('p', 'empty-note', '这里还没有课程。'));
      return;
    }
    var grid = el('div', 'grid grid-lessons');
    lessons.forEach(function (lesson) {
      var tile = el('button', 'tile lesson-tile');
      tile.type = 'button';
      tile.setAttribute('data-lesson-id', lesson.id);
      if (lesson.cover) {
        var img = el('img', 'cover');
        img.alt = '';
        img.src = lesson.cover;
        tile.appendChild(img);
      }
      tile.appendChild(el('span', 'title', lesson.title));
      tile.appendChild(el('span', 'meta', lessonMeta(lesson)));
      var roles = el('span', 'roles');
      var shown = (lesson.roles || []).filter(function (role) { return role !== 'cover'; });
      shown.sort(function (a, b) { return roleOrder(a) - roleOrder(b); });
      shown.forEach(function (role) {
        roles.appendChild(el('span', 'role', role === 'video' ? '▶ 视频' : ROLE_NAMES[role] || role));
      });
      tile.appendChild(roles);
      grid.appendChild(item(entry, tile, function () { openLesson(entry, lesson); }));
    });
    main.appendChild(grid);
  }

  function openLesson(from, lesson) {
    load('/api/v1/lessons/' + encodeURIComponent(lesson.id), function (data) {
      push({ screen: 'lesson', lesson: data, crumbs: from.crumbs.concat([data.title]), index: 0 });
    });
  }

  function documentTitle(asset, assets) {
    var name = ROLE_NAMES[asset.role] || asset.role;
    var same = assets.filter(function (a) { return a.role === asset.role; });
    return same.length > 1 ? name + '（' + asset.name + '）' : name;
  }

  function lessonVideos(lesson) {
    return (lesson.assets || []).filter(function (a) { return a.role === 'video'; });
  }

  function lessonDocuments(lesson) {
    var docs = (lesson.assets || []).filter(function (a) {
      return DOCUMENT_ROLES.indexOf(a.role) >= 0 && a.pages && a.pages.length;
    });
    docs.sort(function (a, b) { return roleOrder(a.role) - roleOrder(b.role); });
    return docs;
  }

  function renderLesson(entry) {
    var lesson = entry.lesson;
    var head = el('div', 'lesson-head');
    head.appendChild(el('h1', 'lesson-title', lesson.title));
    head.appendChild(el('p', 'lesson-path', [lesson.section, pathText(lesson.path)].filter(Boolean).join(' · ')));
    main.appendChild(head);
    var actions = el('div', 'grid grid-actions');
    var videos = lessonVideos(lesson);
    videos.forEach(function (asset) {
      var n = (asset.pause_points || []).length;
      var tile = el('button', 'tile action-tile play');
      tile.type = 'button';
      tile.setAttribute('data-role', 'video');
      tile.appendChild(el('span', 'label', '▶ 播放视频' + (videos.length > 1 ? '（' + asset.name + '）' : '')));
      var left = positions[asset.url];
      var meta = n ? '有 ' + n + ' 个暂停点，到点自动暂停' : '没有暂停点';
      tile.appendChild(el('span', 'meta', left ? '从 ' + clock(left) + ' 继续 · ' + meta : meta));
      actions.appendChild(item(entry, tile, function () { openPlayer(entry, asset); }));
    });
    var docs = lessonDocuments(lesson);
    docs.forEach(function (asset) {
      var tile = el('button', 'tile action-tile');
      tile.type = 'button';
      tile.setAttribute('data-role', asset.role);
      tile.appendChild(el('span', 'label', documentTitle(asset, docs)));
      tile.appendChild(el('span', 'meta', '共 ' + asset.pages.length + ' 页'));
      actions.appendChild(item(entry, tile, function () { openDocument(entry, asset); }));
    });
    main.appendChild(actions);
    var hidden = (lesson.assets || []).filter(function (a) {
      return DOCUMENT_ROLES.indexOf(a.role) >= 0 && !(a.pages && a.pages.length);
    });
    if (hidden.length) {
      main.appendChild(el('p', 'lesson-note', hidden.map(function (a) {
        return (ROLE_NAMES[a.role] || a.role) + '（' + a.name + '）';
      }).join('、') + ' 没有可在电视上显示的页面，请在电脑上打开。'));
    }
    if (!videos.length && !docs.length) {
      main.appendChild(el('p', 'lesson-note', '这节课没有可以在电视上播放或显示的内容。'));
    }
  }

  var RENDER = { home: renderLevel, grades: renderLevel, subjects: renderLevel, lessons: renderLessons,
    lesson: renderLesson };

  function openPlayer(from, asset) {
    push({ screen: 'player', lesson: from.lesson, asset: asset, crumbs: from.crumbs.concat(['视频']) });
    requestFullscreen();
  }

  function openDocument(from, asset) {
    var title = documentTitle(asset, lessonDocuments(from.lesson));
    push({ screen: 'document', lesson: from.lesson, asset: asset, title: title,
      crumbs: from.crumbs.concat([title]) });
  }

  function requestFullscreen() {
    var root = document.documentElement;
    var fn = root.requestFullscreen || root.webkitRequestFullscreen;
    if (!fn || document.fullscreenElement || document.webkitFullscreenElement) return;
    try {
      var p = fn.call(root);
      if (p && p.catch) p.catch(function () { /* not allowed here: the page already fills the screen */ });
    } catch (e) { /* as above */ }
  }

  function exitFullscreen() {
    var fn = document.exitFullscreen || document.webkitExitFullscreen;
    if (!fn || !(document.fullscreenElement || document.webkitFullscreenElement)) return;
    try {
      var p = fn.call(document);
      if (p && p.catch) p.catch(function () { /* ignore */ });
    } catch (e) { /* ignore */ }
  }

  // ------------------------------------------------------------------ the player

  var player = (function () {
    var entry = null;
    var points = [];
    var passed = [];
    var ticker = null;
    var exactTimer = null;
    var hideTimer = null;
    var lastTime = 0;  // where playback was before an error, which may reset currentTime
    var pauseOverlay = $('pause-overlay');
    var endOverlay = $('end-overlay');
    var status = $('player-status');
    var badge = $('player-badge');
    var fill = $('player-fill');
    var progress = $('player-progress');
    var api = { endGroup: { items: [], index: 0 } };

    function active() { return entry !== null; }

    api.open = function (e) {
      if (entry === e) return;
      entry = e;
      lastTime = 0;
      points = (e.asset.pause_points || []).slice().sort(function (a, b) { return a.at - b.at; });
      passed = points.map(function () { return false; });
      pauseOverlay.hidden = true;
      endOverlay.hidden = true;
      badge.hidden = true;
      $('player-address').textContent = '本机地址：' + BOX_URL;
      drawMarkers();
      video.src = e.asset.url;
      var resumeAt = positions[e.asset.url] || 0;
      if (resumeAt > 0) {
        video.currentTime = resumeAt;
        rearm(resumeAt);
      }
      showUi();
      play();
    };

    api.close = function () {
      if (!entry) return;
      if (!video.ended && video.currentTime > 1) positions[entry.asset.url] = video.currentTime;
      else delete positions[entry.asset.url];
      entry = null;
      stopTicking();
      video.pause();
      video.removeAttribute('src');
      video.load();  // let go of the connection and the decoder: cheap boxes have little memory
      pauseOverlay.hidden = true;
      endOverlay.hidden = true;
      exitFullscreen();
    };

    /* Close the pause or end overlay if one is shown; return whether one was. */
    api.closeOverlay = function () {
      if (!pauseOverlay.hidden) {
        pauseOverlay.hidden = true;  // stay paused: the teacher may still be talking
        setOverlayState();
        showBadge();
        refocus();
        return true;
      }
      return false;
    };

    function play() {
      var p = video.play();
      if (p && p.catch) {
        p.catch(function (err) {
          if (err && err.name === 'NotAllowedError') showBadge('按 确定 键开始播放');
        });
      }
    }

    function drawMarkers() {
      var old = progress.querySelectorAll('.marker');
      for (var i = 0; i < old.length; i++) progress.removeChild(old[i]);
      var duration = video.duration;
      if (!isFinite(duration) || duration <= 0) return;
      points.forEach(function (p) {
        var m = el('span', 'marker');
        m.style.left = Math.min(100, (p.at / duration) * 100) + '%';
        progress.appendChild(m);
      });
    }

    function nextPoint(t) {
      for (var i = 0; i < points.length; i++) if (!passed[i] && points[i].at >= t - PAUSE_EARLY_S) return points[i];
      return null;
    }

    function updateStatus() {
      if (!entry) return;
      var t = video.currentTime;
      var d = video.duration;
      var text = (video.paused ? '❚❚ ' : '▶ ') + clock(t) + ' / ' + (isFinite(d) ? clock(d) : '--:--');
      var next = nextPoint(t);
      text += next ? '　下一个暂停点 ' + clock(next.at) : (points.length ? '　后面没有暂停点了' : '');
      status.textContent = text;
      $('player-toggle').textContent = video.paused ? '播放' : '暂停';
      fill.style.width = (isFinite(d) && d > 0 ? Math.min(100, (t / d) * 100) : 0) + '%';
    }

    function showUi() {
      playerLayer.classList.add('show-ui');
      clearTimeout(hideTimer);
      if (!video.paused) {
        hideTimer = setTimeout(function () {
          if (!video.paused) playerLayer.classList.remove('show-ui');
        }, UI_HIDE_MS);
      }
      updateStatus();
    }

    function showBadge(text) {
      if (!pauseOverlay.hidden || !endOverlay.hidden) return;
      badge.textContent = text || '❚❚ 已暂停　按 确定 键继续';
      badge.hidden = false;
    }

    /* After a seek to t: points before t count as passed, points from t on stop playback again. */
    function rearm(t) {
      for (var i = 0; i < points.length; i++) passed[i] = points[i].at < t;
    }

    function check() {
      if (!entry || video.paused || !pauseOverlay.hidden) return;
      var t = video.currentTime;
      for (var i = 0; i < points.length; i++) {
        if (!passed[i] && t >= points[i].at - PAUSE_EARLY_S) {
          passed[i] = true;
          stopAt(points[i]);
          return;
        }
      }
      // The interval may be late on a slow box: aim a timer at a point that is about to come.
      clearTimeout(exactTimer);
      var next = nextPoint(t);
      if (next) {
        var wait = (next.at - PAUSE_EARLY_S - t) / (video.playbackRate || 1);
        if (wait < 0.4) exactTimer = setTimeout(check, Math.max(0, wait * 1000));
      }
    }

    function stopAt(point) {
      video.pause();
      badge.hidden = true;
      $('pause-prompt').textContent = point.prompt;
      pauseOverlay.hidden = false;
      setOverlayState();
      showUi();
      refocus();
    }

    function resume() {
      pauseOverlay.hidden = true;
      setOverlayState();
      refocus();
      play();
    }

    function startTicking() {
      if (!ticker) ticker = setInterval(function () { check(); updateStatus(); }, CHECK_EVERY_MS);
    }

    function stopTicking() {
      clearInterval(ticker);
      ticker = null;
      clearTimeout(exactTimer);
    }

    function seekBy(delta) {
      if (!entry) return;
      var d = video.duration;
      var t = video.currentTime + delta;
      if (isFinite(d)) t = Math.min(t, Math.max(0, d - 0.5));
      t = Math.max(0, t);
      video.currentTime = t;
      rearm(t);
      if (!pauseOverlay.hidden) {
        pauseOverlay.hidden = true;
        setOverlayState();
        refocus();
        showBadge();
      }
      showUi();
    }

    function toggle() {
      if (!pauseOverlay.hidden) {
        resume();
      } else if (video.paused) {
        play();
      } else {
        video.pause();
      }
      showUi();
    }

    function showEnd() {
      var group = api.endGroup;
      group.items = [];
      group.index = 0;
      var box = $('end-actions');
      clear(box);
      var lessonEntry = stack[stack.length - 2];
      box.appendChild(item(group, el('button', 'tile action', '重新播放'), function () {
        endOverlay.hidden = true;
        setOverlayState();
        video.currentTime = 0;
        rearm(0);
        refocus();
        play();
      }));
      lessonDocuments(entry.lesson).slice(0, 3).forEach(function (asset) {
        box.appendChild(item(group, el('button', 'tile action', '打开' + ROLE_NAMES[asset.role]), function () {
          back();
          if (lessonEntry && top() === lessonEntry) openDocument(lessonEntry, asset);
        }));
      });
      box.appendChild(item(group, el('button', 'tile action', '返回课程'), back));
      badge.hidden = true;
      pauseOverlay.hidden = true;
      endOverlay.hidden = false;
      setOverlayState();
      showUi();
      refocus();
    }

    video.addEventListener('play', function () { badge.hidden = true; startTicking(); showUi(); });
    video.addEventListener('playing', function () { badge.hidden = true; updateStatus(); });
    video.addEventListener('pause', function () {
      stopTicking();
      if (active() && !video.ended) showBadge();
      showUi();
    });
    video.addEventListener('timeupdate', function () {
      if (active()) lastTime = video.currentTime;
      check();
      updateStatus();
    });
    video.addEventListener('seeking', function () { rearm(video.currentTime); updateStatus(); });
    video.addEventListener('loadedmetadata', function () { drawMarkers(); updateStatus(); });
    video.addEventListener('waiting', function () { if (active()) status.textContent = '正在缓冲…'; });
    video.addEventListener('ended', function () { if (active()) showEnd(); });
    video.addEventListener('error', function () {
      if (!active() || !video.getAttribute('src')) return;
      var leave = function () { hideMessage(); back(); };
      if (video.error && video.error.code === 2) {  // MEDIA_ERR_NETWORK: the box or the Wi-Fi went away
        var at = lastTime;
        showMessage('无法连接到教学盒子，请检查网络', '视频停在 ' + clock(at) + '。网络恢复后按 确定 键从这里继续。',
          [{ label: '重试', action: function () { reload(at); } }, { label: '返回课程', action: back }], leave);
        return;
      }
      showMessage('这个视频无法播放', '文件可能已损坏，或者这台电视不支持它的格式。请联系技术员。',
        [{ label: '返回课程', action: back }], leave);
    });

    function reload(at) {
      if (!entry) return;
      video.src = entry.asset.url;
      video.currentTime = at;
      rearm(at);
      play();
    }

    video.addEventListener('click', function () { if (active()) toggle(); });
    badge.addEventListener('click', function () { if (active()) toggle(); });
    $('pause-continue').activate = resume;
    $('pause-continue').addEventListener('click', function (event) { event.preventDefault(); resume(); });
    $('player-toggle').addEventListener('click', toggle);
    $('player-back10').addEventListener('click', function () { seekBy(-SEEK_STEP_S); });
    $('player-fwd10').addEventListener('click', function () { seekBy(SEEK_STEP_S); });
    $('player-exit').addEventListener('click', back);
    playerLayer.addEventListener('mousemove', function () { if (active()) showUi(); });

    /* Handle a key in the player; return whether it was used. */
    api.key = function (action) {
      if (!endOverlay.hidden) return false;  // the end overlay's buttons take the arrows
      if (!pauseOverlay.hidden) {
        if (action === 'ok' || action === 'playpause') { resume(); return true; }
        if (action === 'left') { seekBy(-SEEK_STEP_S); return true; }
        if (action === 'right') { seekBy(SEEK_STEP_S); return true; }
        return action === 'up' || action === 'down';
      }
      if (action === 'ok' || action === 'playpause') toggle();
      else if (action === 'left') seekBy(-SEEK_STEP_S);
      else if (action === 'right') seekBy(SEEK_STEP_S);
      else if (action === 'up' || action === 'down') showUi();
      else return false;
      return true;
    };

    return api;
  })();

  // ------------------------------------------------------------------ the document viewer

  var docViewer = (function () {
    var entry = null;
    var stage = $('doc-stage');
    var api = {};

    function showPage() {
      var pages = entry.asset.pages;
      var page = entry.page;
      $('doc-error').hidden = true;
      docImage.hidden = false;
      docImage.src = pages[page].url;
      docImage.alt = entry.title + ' 第 ' + (page + 1) + ' 页';
      stage.scrollTop = 0;
      $('doc-indicator').textContent = '第 ' + (page + 1) + ' / ' + pages.length + ' 页';
      $('doc-prev').disabled = page === 0;
      $('doc-next').disabled = page === pages.length - 1;
      docPages[entry.asset.url] = page;
      if (page + 1 < pages.length) {
        var next = new Image();
        next.src = pages[page + 1].url;  // so the next flip shows at once
      }
    }

    /* A portrait page fitted to a landscape TV is small: OK fills the width and the arrows scroll. */
    function setZoom(zoomed) {
      entry.zoomed = zoomed;
      docLayer.classList.toggle('zoomed', zoomed);
      $('doc-zoom').textContent = zoomed ? '缩小' : '放大';
      $('doc-hint').textContent = zoomed ? '↑ ↓ 移动　确定 缩小' : '← → 翻页　确定 放大';
      stage.scrollTop = 0;
    }

    api.open = function (e) {
      if (entry === e) return;
      entry = e;
      if (typeof e.page !== 'number') e.page = Math.min(docPages[e.asset.url] || 0, e.asset.pages.length - 1);
      $('doc-title').textContent = e.title;
      setZoom(!!e.zoomed);
      showPage();
    };

    api.close = function () {
      entry = null;
      docImage.removeAttribute('src');
    };

    function flip(delta) {
      if (!entry) return;
      var page = entry.page + delta;
      if (page < 0 || page >= entry.asset.pages.length) return;
      entry.page = page;
      showPage();
    }

    function scroll(direction) {
      if (entry && entry.zoomed) stage.scrollTop += direction * Math.round(stage.clientHeight * 0.4);
    }

    docImage.addEventListener('error', function () {
      if (!entry || !docImage.getAttribute('src')) return;
      docImage.hidden = true;
      $('doc-error').hidden = false;
    });
    $('doc-prev').addEventListener('click', function () { flip(-1); });
    $('doc-next').addEventListener('click', function () { flip(1); });
    $('doc-zoom').addEventListener('click', function () { if (entry) setZoom(!entry.zoomed); });
    $('doc-exit').addEventListener('click', back);

    api.key = function (action) {
      if (action === 'left') flip(-1);
      else if (action === 'right') flip(1);
      else if (action === 'up') scroll(-1);
      else if (action === 'down') scroll(1);
      else if (action === 'ok') setZoom(!entry.zoomed);
      else return false;
      return true;
    };

    return api;
  })();

  // ------------------------------------------------------------------ keys

  var BACK_CODES = [8, 27, 166, 461, 10009];  // Backspace, Escape, BrowserBack, LG webOS, Samsung Tizen

  function keyAction(event) {
    var k = event.key;
    var c = event.keyCode;
    if (k === 'ArrowUp' || k === 'Up' || c === 38) return 'up';
    if (k === 'ArrowDown' || k === 'Down' || c === 40) return 'down';
    if (k === 'ArrowLeft' || k === 'Left' || c === 37) return 'left';
    if (k === 'ArrowRight' || k === 'Right' || c === 39) return 'right';
    if (k === 'Enter' || k === 'Accept' || k === ' ' || k === 'Spacebar' || c === 13 || c === 32) return 'ok';
    if (k === 'MediaPlayPause' || k === 'MediaPlay' || k === 'MediaPause' || c === 179 || c === 415 || c === 19) {
      return 'playpause';
    }
    if (k === 'MediaFastForward' || c === 417) return 'right';
    if (k === 'MediaRewind' || c === 412) return 'left';
    if (k === 'Escape' || k === 'Esc' || k === 'Backspace' || k === 'GoBack' || k === 'BrowserBack' ||
        BACK_CODES.indexOf(c) >= 0) {
      return 'back';
    }
    return null;
  }

  document.addEventListener('keydown', function (event) {
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    var action = keyAction(event);
    if (!action) return;
    event.preventDefault();  // no native button click, page scroll or history step: we do it
    if (action === 'back') {
      back();
      return;
    }
    if (event.repeat && action === 'ok') return;  // a held OK key must not open two screens
    if (isLoading()) return;
    var entry = top();
    if (!messageState && entry && entry.screen === 'player' && player.key(action)) return;
    if (!messageState && entry && entry.screen === 'document' && docViewer.key(action)) return;
    if (action === 'ok') activateFocused();
    else if (action !== 'playpause') moveFocus(action);
  });

  // A stray tap or click must never leave the page without a focused element.
  document.addEventListener('focusin', function (event) {
    var group = focusGroup();
    if (group && group.items && group.items.length && group.items.indexOf(event.target) < 0) {
      setTimeout(refocus, 0);
    }
  });

  backButton.addEventListener('click', back);

  // ------------------------------------------------------------------ start

  function start() {
    if (messageState) hideMessage();
    openLevel(0, {}, [], true);
  }

  start();
})();
