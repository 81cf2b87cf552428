# Used by `sam build` (template.yaml, ConfigLayer): the config travels in a layer, which
# Lambda extracts under /opt; the function reads it from /opt/pennyworth at cold start.
.PHONY: build-ConfigLayer

build-ConfigLayer:
	mkdir -p "$(ARTIFACTS_DIR)/pennyworth/policies"
	cp routes.yaml models.yaml "$(ARTIFACTS_DIR)/pennyworth/"
	cp policies/*.cedar policies/*.cedarschema "$(ARTIFACTS_DIR)/pennyworth/policies/"
	if [ -f limits.yaml ]; then cp limits.yaml "$(ARTIFACTS_DIR)/pennyworth/"; fi
