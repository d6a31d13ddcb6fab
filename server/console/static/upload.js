/* The upload page: several files at once, each sent with tus (resumable) to /api/v1/uploads with the session's
   CSRF token, a real progress bar per file, then htmx polling of each rendition's transcoding progress. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var rows = document.getElementById("file-rows");
  var picker = document.getElementById("files");
  var drop = document.getElementById("drop");
  var pending = [];
  var d = form.dataset;

  function field(name) { return form.elements[name].value.trim(); }

  function titleOf(name) { return name.replace(/\.[^.]+$/, "").slice(0, 200); }

  function addFiles(list) {
    var empty = rows.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    Array.prototype.forEach.call(list, function (file) {
      var n = pending.length;
      var tr = document.createElement("tr");
      tr.className = "file";
      tr.innerHTML = "<td class='name'></td><td><label class='visually-hidden' for='title-" + n + "'></label>" +
        "<input id='title-" + n + "' class='title' maxlength='200' required></td>" +
        "<td><progress class='upload' max='100' value='0' aria-labelledby='title-" + n + "'></progress> " +
        "<span class='pct'>0%</span> <span class='msg' role='status'></span></td><td class='transcode-cell'></td>";
      tr.querySelector(".name").textContent = file.name + " (" + (file.size / 1048576).toFixed(1) + " MB)";
      tr.querySelector("label").textContent = d.msgTitle + " " + file.name;
      tr.querySelector("input.title").value = titleOf(file.name);
      rows.appendChild(tr);
      pending.push({file: file, row: tr, started: false});
    });
  }

  function showError(row, text) {
    var msg = row.querySelector(".msg");
    msg.textContent = d.msgRefused + ": " + text;
    msg.className = "msg error";
    row.classList.add("refused");
  }

  function errorText(err) {
    var res = err && err.originalResponse;
    if (res) {
      try { return JSON.parse(res.getBody()).error.message; } catch (e) { /* not JSON: say what we have */ }
      return res.getStatus() + " " + (res.getBody() || "");
    }
    return String(err && err.message || err);
  }

  function watchTranscode(row, lessonId) {
    var cell = row.querySelector(".transcode-cell");
    var div = document.createElement("div");
    div.setAttribute("hx-get", d.progress.replace("/0/", "/" + lessonId + "/"));
    div.setAttribute("hx-trigger", "load");
    div.setAttribute("hx-swap", "outerHTML");
    cell.appendChild(div);
    var link = document.createElement("a");
    link.href = d.lesson.replace("/0", "/" + lessonId);
    link.textContent = d.msgOpen;
    cell.appendChild(link);
    window.htmx.process(div);
  }

  function start(item) {
    if (item.started) { return; }
    item.started = true;
    var row = item.row, lessonId = null;
    var bar = row.querySelector("progress.upload"), pct = row.querySelector(".pct");
    var upload = new window.tus.Upload(item.file, {
      endpoint: d.endpoint,
      chunkSize: parseInt(d.chunk, 10),
      retryDelays: [0, 500, 1000, 2000, 3000, 5000, 8000, 13000, 21000],
      headers: {"X-CSRFToken": d.csrf},
      removeFingerprintOnSuccess: true,
      metadata: {filename: item.file.name, title: row.querySelector("input.title").value.trim(),
                 speaker: field("speaker"), series: field("series"), language: field("language") || "cmn",
                 description: field("description")},
      onProgress: function (sent, total) {
        var p = total ? Math.floor(sent * 100 / total) : 0;
        bar.value = p; pct.textContent = p + "%";
      },
      onShouldRetry: function (err) {
        var status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        if (status >= 400 && status < 500 && status !== 409 && status !== 423) { return false; }
        row.querySelector(".msg").textContent = d.msgRetrying;
        return true;
      },
      onAfterResponse: function (req, res) {
        var id = res.getHeader("Lessoncast-Lesson-Id");
        if (id) { lessonId = id; }
      },
      onError: function (err) { showError(row, errorText(err)); },
      onSuccess: function () {
        bar.value = 100; pct.textContent = "100%";
        row.querySelector(".msg").textContent = d.msgUploaded;
        row.dataset.uploadUrl = upload.url;
        if (lessonId) { row.dataset.lesson = lessonId; watchTranscode(row, lessonId); }
      }
    });
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) { upload.resumeFromPreviousUpload(previous[0]); }
      upload.start();
    });
  }

  picker.addEventListener("change", function () { addFiles(picker.files); picker.value = ""; });
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) { addFiles(e.dataTransfer.files); });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    pending.forEach(start);
  });
}());
