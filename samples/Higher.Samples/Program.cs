using System.CommandLine;
using Higher.Samples;

// Higher's samples, one console app:
//   dotnet run -c Release --project samples/Higher.Samples -- <command> [options]   (--help lists them)
// Every command takes --device cpu|cuda and --help; a bad value is refused with one line on stderr
// and exit code 2 before any work starts.
var root = new RootCommand("Higher samples: differentiating through optimization in C#")
{
    MamlSineCommand.Create(),
    HyperCommand.Create(),
    FashionMlpCommand.Create(),
    ImamlSineCommand.Create(),
    LrScheduleCommand.Create(),
    FewShotCommand.Create(),
};

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    string command = parsed.CommandResult.Command == root ? "" : " " + parsed.CommandResult.Command.Name;
    string message = string.Join(' ', parsed.Errors[0].Message.Split(['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    Console.Error.WriteLine($"{message} (see higher-samples{command} --help)");
    return 2;
}
return parsed.Invoke();
