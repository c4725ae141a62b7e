// tcli: the user's CLI. Placeholder until `tcli push` lands.
process.stderr.write("tcli: no commands yet\n");
process.exitCode = 2;
