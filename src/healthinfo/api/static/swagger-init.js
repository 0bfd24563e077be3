// Starts Swagger UI on /docs. A file of ours, not an inline script, so the page runs under
// `script-src 'self'`; the page passes the document's URL in data-openapi-url.
(function () {
  "use strict";
  var script = document.currentScript;
  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
      url: script.dataset.openapiUrl,
      dom_id: "#swagger-ui",
      layout: "BaseLayout",
      deepLinking: true,
      displayOperationId: true,
      showExtensions: true,
      persistAuthorization: false,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    });
  });
})();
