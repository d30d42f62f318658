// Starts `cnnc lsp` (the command in the `cnnc.command` setting) for .cnn files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("cnnc");
  const [command, ...args] = config.get("command", ["cnnc", "lsp"]);
  client = new LanguageClient(
    "cnnc",
    "cnnc",
    { command, args },
    {
      documentSelector: [{ language: "cnn" }],
      initializationOptions: { inlayHints: config.get("inlayHints", false) },
      synchronize: { configurationSection: "cnnc" },
    }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
