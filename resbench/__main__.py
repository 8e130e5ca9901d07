from resbench.cli.main import app

app(prog_name="resbench")
