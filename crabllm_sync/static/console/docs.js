// /docs: Swagger UI over this gateway's /openapi.json.
window.ui = SwaggerUIBundle({
  url: document.getElementById("docs-init").getAttribute("data-spec"),
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 0,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
