// Swagger UI for /docs, from a file of the service's own: the page's Content-Security-Policy
// allows scripts from the service only ('self'), never inline ones.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    // No badge from validator.swagger.io: it would send this document's address elsewhere.
    validatorUrl: null
  });
};
