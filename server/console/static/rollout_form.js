// The new-rollout form: it shows three stage rows, and "Add a stage" shows the next of the hidden ones, up to the
// most a rollout takes (the page renders that many rows), and puts the focus on its group. Without this script the
// button stays hidden and the form keeps its three rows.
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("add-stage");
  if (!button) return;
  const nextRow = () => document.querySelector("#stage-rows tr[hidden]");
  button.hidden = false;
  button.disabled = !nextRow();
  button.addEventListener("click", () => {
    const row = nextRow();
    if (!row) return;
    row.hidden = false;
    row.querySelector("select").focus();
    button.disabled = !nextRow();
  });
});
