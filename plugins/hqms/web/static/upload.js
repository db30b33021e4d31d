// The upload page's size check before sending (the server enforces the same limit on the stream).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form.upload");
  if (!form) return;
  var limit = parseInt(form.getAttribute("data-max-bytes"), 10);
  form.addEventListener("submit", function (event) {
    var input = form.querySelector("input[type=file]");
    var file = input && input.files && input.files[0];
    if (file && file.size > limit) {
      event.preventDefault();
      var box = document.getElementById("client-refusal");
      box.textContent = "上传文件不能超过 20M：请拆分为多个 zip 压缩包后分别上传（" + file.name + "）";
      box.hidden = false;
    }
  });
});
