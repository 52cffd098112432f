--- The texts of `viggle --help` and `viggle COMMAND --help`.
local _M = {}

_M.usage = [==[
Usage: viggle COMMAND [OPTIONS] [ARGS]

Follow and fetch Viggle renders from the shell.

Commands:
  status JOB_ID...          show jobs' status
  wait JOB_ID...            follow jobs until they end, with live progress
  render [OPTIONS]          start a render (upload files or give URLs)
  cancel JOB_ID...          cancel jobs (their credits are refunded)
  download JOB_ID|URL       download a finished video
  credits                   show the account's credit balance
  help [COMMAND]            show help for a command

Environment:
  VIGGLE_API_KEY            your API key (sk-...); never printed
  VIGGLE_BASE_URL           the API (default https://apis.viggle.ai)

A JOB_ID of - reads ids from stdin, one a line. Every command takes
--verbose: each request (method, URL, status, time; never the key) and
each retry on stderr. With --json, stdout holds only JSON (the API's own
text); progress and messages always go to stderr.

Exit codes: 0 done, 1 error, 2 usage, 3 job failed, 4 job cancelled,
5 timed out, 130 interrupted. For several jobs the worst wins:
1 error > 5 timed out > 3 failed > 4 cancelled > 0.
Run 'viggle COMMAND --help' for a command's options.
]==]

_M.commands = {
  status = [==[
Usage: viggle status JOB_ID... [--json] [--verbose]

Show each job's status, checkpoint, progress and video link; - reads ids
from stdin, one a line.
  --json        one JSON document per line per job, in order: the API's
                answer as it came, or {"job_id", "error": {...}}
Exit code: 0, or 1 when any id failed (the others are still shown).
]==],
  wait = [==[
Usage: viggle wait JOB_ID... [--interval S] [--timeout S] [--json] [--cancel-on-timeout] [--verbose]

Follow one or more jobs until each is complete, failed or cancelled (- reads
ids from stdin, one a line). On stderr: on a terminal a live line per job
(status, checkpoint, a progress bar, time elapsed), otherwise a line per
change; an error once. On stdout: "video: URL" (one job) or "JOB_ID URL"
per complete job. An API that cannot be reached for 60 s ends the wait.
  --interval S          seconds between polls of a job (default 3)
  --timeout S           give up after S seconds in all (default 1800)
  --cancel-on-timeout   cancel jobs still running at the deadline (refunds credits)
  --rate N              at most N status requests per second in all
  --json                one JSON document per line per job, in input order, once all
                        have ended: the API's last answer, or for an error
                        {"job_id", "error": {kind, code, message, status}, "job": last answer}
Exit code: 0 all complete, 3 a job failed, 4 a job was cancelled, 5 timed out,
1 other errors; for several jobs the worst wins: 1 error > 5 timed out > 3 failed > 4 cancelled > 0.
]==],
  render = [==[
Usage: viggle render [OPTIONS] [--wait [-o FILE]]

Start a render. A character (--image, --image-url or --character) and a
motion (--video, --video-url or --scene) are needed.
  --image FILE          character image (PNG/JPG), uploaded
  --image-url URL       character image fetched by the server
  --video FILE          motion video (MP4), uploaded
  --video-url URL       motion video fetched by the server
  --character ID        a ready character
  --scene ID            a ready scene
  --mapping JSON        multi-character mapping {"<segment uuid>": "<character id>"}
  --model NAME          V4_Preview (default) or V3_Preview
  --background MODE     original (default), solid, transparent
  --bg-color R,G,B      solid background colour
  --fast                2x speed at 2x credits
  --wait                follow the job to the end (live progress)
  -o, --output FILE     with --wait: download the video to FILE (a directory: DIR/JOB_ID.mp4)
  --mask                with -o: download the alpha mask instead
  --overwrite           replace FILE if it exists
  --interval S, --timeout S, --cancel-on-timeout   as for 'viggle wait'
  --cancel-on-interrupt on Ctrl-C, cancel the job (else the job id and the
                        commands to follow or cancel it are printed)
  --json                one JSON document on stdout: the API's answer to the
                        render, or with --wait the job's last answer
]==],
  cancel = [==[
Usage: viggle cancel JOB_ID... [--json] [--verbose]

Cancel jobs (- reads ids from stdin); their credits are refunded.
  --json        one JSON document per line per job: the API's answer, or an error
]==],
  download = [==[
Usage: viggle download JOB_ID|URL [-o FILE] [--mask] [--overwrite]

Download a finished video (the job's cdn_url) with a progress bar. An
interrupted download resumes from FILE.part when run again.
  -o, --output FILE     where to write (default JOB_ID.mp4, or the URL's file name);
                        an existing directory: DIR/JOB_ID.mp4 in it
  --mask                the alpha mask video (transparent renders)
  --overwrite           replace FILE if it exists
]==],
  credits = [==[
Usage: viggle credits [--json] [--verbose]

Show the account's credit balance.
  --json        the API's answer (one JSON document)
]==],
}

return _M
