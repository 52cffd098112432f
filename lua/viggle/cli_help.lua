--- The texts of `viggle --help` and `viggle COMMAND --help`.
local _M = {}

_M.usage = [==[
Usage: viggle COMMAND [OPTIONS] [ARGS]

Follow and fetch Viggle renders from the shell.

Commands:
  status JOB_ID             show a job's status
  wait JOB_ID...            follow jobs until they end, with live progress
  render [OPTIONS]          start a render (upload files or give URLs)
  cancel JOB_ID             cancel a job (its credits are refunded)
  download JOB_ID|URL       download a finished video
  credits                   show the account's credit balance
  batch MANIFEST            run or resume a durable batch of renders
  batch status MANIFEST     show a batch's journal (no API calls)
  characters list|get|create|delete|wait
                            reusable characters (made once from an image)
  scenes list|get|create|import|delete|wait
                            reusable scenes (made once from a video, or a template)
  help [COMMAND]            show help for a command

Environment:
  VIGGLE_API_KEY            your API key (sk-...); never printed
  VIGGLE_BASE_URL           the API (default https://apis.viggle.ai)

Exit codes: 0 done, 1 error, 2 usage, 3 job failed, 4 job cancelled,
5 timed out, 130 interrupted.
Run 'viggle COMMAND --help' for a command's options.
]==]

_M.commands = {
  status = [==[
Usage: viggle status JOB_ID [--json]

Show a job's status, checkpoint, progress and video link.
  --json        print the job as JSON (one object)
]==],
  wait = [==[
Usage: viggle wait JOB_ID... [--interval S] [--timeout S] [--json] [--cancel-on-timeout]

Follow one or more jobs until each is complete, failed or cancelled. On a
terminal a live line per job shows status, checkpoint, a progress bar and the
time elapsed; otherwise a line is printed whenever a job changes.
  --interval S          seconds between polls of a job (default 3)
  --timeout S           give up after S seconds in all (default 1800)
  --cancel-on-timeout   cancel jobs still running at the deadline (refunds credits)
  --rate N              at most N status requests per second in all
  --json                print the final jobs as JSON, one object per line
Exit code: 0 all complete, 3 a job failed, 4 a job was cancelled, 5 timed out, 1 other errors.
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
  -o, --output FILE     with --wait: download the video to FILE
  --mask                with -o: download the alpha mask instead
  --overwrite           replace FILE if it exists
  --interval S, --timeout S, --cancel-on-timeout   as for 'viggle wait'
  --json                print the job as JSON
]==],
  cancel = [==[
Usage: viggle cancel JOB_ID

Cancel a job; its credits are refunded.
]==],
  download = [==[
Usage: viggle download JOB_ID|URL [-o FILE] [--mask] [--overwrite]

Download a finished video (the job's cdn_url) with a progress bar. An
interrupted download resumes from FILE.part when run again.
  -o, --output FILE     where to write (default JOB_ID.mp4, or the URL's file name)
  --mask                the alpha mask video (transparent renders)
  --overwrite           replace FILE if it exists
]==],
  credits = [==[
Usage: viggle credits [--json]

Show the account's credit balance.
]==],
  batch = [==[
Usage: viggle batch MANIFEST [--journal PATH] [--concurrency N] [--max-credits N]
                    [--allow-unknown-cost] [--resubmit-uncertain] [--interval S]
                    [--timeout S] [--json]
       viggle batch status MANIFEST [--journal PATH] [--json]

Run a batch of renders that survives a crash: submit, wait, download. Run
the same command again to resume: nothing paid for is lost or paid twice.

MANIFEST is JSON Lines, one render a line: a unique "key", the render fields
(ref_image, driving_video, ref_image_url, driving_video_url, character_id,
scene_id, character_mapping, model, background_mode, bg_color, fast) and
"output" (the video's path; "mask_output" optional). Relative paths are
relative to the manifest's directory.
  {"key": "hero-run", "ref_image": "hero.png", "driving_video": "run.mp4", "output": "out/hero-run.mp4"}

Before any POST: every input is checked (readable, not empty), every output
(absent, its directory writable), the key, and the cost (1 credit a second
of video, 2 with fast; unknown for a remote video) against the balance.

The journal (SQLite, MANIFEST.journal) records each item's state:
  planned      not sent yet
  submitting   written (and synced) before its POST is sent
  submitted    the API answered with a job id (synced at once)
  complete     the job finished; its video is next
  downloaded   the video is on disk (done)
  failed, cancelled   the job ended so (with the API's error code)
  uncertain    its POST may have reached the server without an answer (the
               batch was killed, or the connection died, after the request
               was sent): the job may exist and be paid for. Reported, and
               not sent again unless --resubmit-uncertain (which may pay twice).
On resume: submitted jobs are awaited (never sent again), complete ones are
downloaded (a .part is resumed), downloaded ones left alone; a POST that
failed before its request was sent whole is sent again. A manifest whose
items changed under the journal is refused, naming the key. One batch at a
time runs on a journal.

  --journal PATH          the journal (default MANIFEST.journal)
  --concurrency N         renders submitted at once, and downloads (default 4)
  --max-credits N         submit only while the estimates of what was
                          submitted stay within N credits
  --allow-unknown-cost    under --max-credits, submit items of unknown cost too
  --resubmit-uncertain    send uncertain items again
  --interval S, --timeout S   polling, as for 'viggle wait'
  --json                  one JSON line per item (key, state, job_id, code,
                          message, output, credits, was_uncertain) at the end
A 402 (not enough credits) stops further submissions; submitted jobs finish.
Live table on a terminal, a line per change otherwise, then a summary.
Exit code: 0 only when every item's video is on disk; 3 an item failed,
4 cancelled, 5 jobs still running at --timeout (run again to go on waiting),
1 otherwise (uncertain, over the limit, a 402, errors).
'status' prints the counts per state and each item's job id, state and
output from the journal alone; --json prints it as one object.
]==],
  characters = [==[
Usage: viggle characters list [--limit N] [--offset N] [--all] [--json]
       viggle characters get ID [--json]
       viggle characters create --name NAME (--image FILE | --image-url URL) [--wait] [--json]
       viggle characters delete ID... [--json]
       viggle characters wait ID... [--interval S] [--timeout S] [--rate N] [--json]

Reusable characters: made once from an image (1 credit), then rendered with
'viggle render --character ID'. A new character is pending, then processing,
then ready (or failed).
  list                  a page of characters (ID, status, name); --all walks every page
  --limit N             page size, 1-100 (default: the API's); --offset N where to start
  get ID                every field of one character
  create                preprocess an image into a character; prints its ID
  --name NAME           the character's name (required)
  --image FILE          the image (PNG/JPG), uploaded
  --image-url URL       an image the server fetches
  --wait                follow it until ready, with live progress (as 'viggle wait')
  delete ID...          delete characters
  wait ID...            follow characters until each is ready or failed
  --interval S          seconds between polls (default 5)
  --timeout S           give up after S seconds in all (default 1800)
  --rate N              at most N status requests per second in all
  --json                JSON output: one object per line (list: the page)
Exit code: 0 done, 3 a character failed, 5 timed out, 1 other errors.
]==],
  scenes = [==[
Usage: viggle scenes list [--limit N] [--offset N] [--all] [--json]
       viggle scenes get ID [--json]
       viggle scenes create --name NAME (--video FILE | --video-url URL)
                            [--background MODE] [--model NAME] [--wait] [--json]
       viggle scenes import --template ID --name NAME [--wait] [--json]
       viggle scenes delete ID... [--json]
       viggle scenes wait ID... [--interval S] [--timeout S] [--rate N] [--json]

Reusable scenes: made once from a motion video (or imported from a
template), then rendered with 'viggle render --scene ID'. A new scene is
pending, then ready (or failed).
  list                  a page of scenes (ID, status, name); --all walks every page
  --limit N             page size, 1-100 (default: the API's); --offset N where to start
  get ID                every field of one scene (size, fps, frames, segments...)
  create                preprocess a video into a scene; prints its ID
  --name NAME           the scene's name (required)
  --video FILE          the motion video (MP4), uploaded
  --video-url URL       a video the server fetches
  --background MODE     original (default), solid, transparent
  --model NAME          V4_Preview (default) or V3_Preview; fixed for the scene's life
  import                a scene from a template (multi-character: see its segments)
  --template ID         the template's id
  --wait                follow it until ready, with live progress (as 'viggle wait')
  delete ID...          delete scenes
  wait ID...            follow scenes until each is ready or failed
  --interval S          seconds between polls (default 5)
  --timeout S           give up after S seconds in all (default 1800)
  --rate N              at most N status requests per second in all
  --json                JSON output: one object per line (list: the page)
Exit code: 0 done, 3 a scene failed, 5 timed out, 1 other errors.
]==],
}

return _M
