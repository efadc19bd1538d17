/* Subcommands of the mtinfer tool. Each returns the process exit code (0 ok, 1 failed check,
 * 2 usage or runtime error). */
#ifndef MTI_TOOLS_CLI_H
#define MTI_TOOLS_CLI_H

int mti_cli_bench(int argc, char **argv);
int mti_cli_model(int argc, char **argv);
int mti_cli_run(int argc, char **argv);
int mti_cli_stress(int argc, char **argv);

#endif
