using ScottPlot;

namespace Higher.Samples;

/// <summary>PNG line plots (ScottPlot), one call per figure.</summary>
internal static class Plots
{
    /// <summary>A line (or, with <see cref="Markers"/>, points) of a figure.</summary>
    public sealed record Series(string Label, double[] X, double[] Y, bool Markers = false, bool Dashed = false);

    /// <summary>Writes a figure of <paramref name="series"/> to <paramref name="path"/> (800 x 500 px).</summary>
    public static void Save(string path, string title, string xLabel, string yLabel, IEnumerable<Series> series, bool logY = false, Alignment legend = Alignment.UpperRight)
    {
        var plot = new Plot();
        foreach (var s in series)
        {
            double[] ys = logY ? s.Y.Select(v => Math.Log10(Math.Max(v, 1e-12))).ToArray() : s.Y;
            if (s.Markers)
            {
                var m = plot.Add.Markers(s.X, ys);
                m.LegendText = s.Label;
                m.MarkerSize = 9;
            }
            else
            {
                var l = plot.Add.ScatterLine(s.X, ys);
                l.LegendText = s.Label;
                l.LineWidth = 2;
                if (s.Dashed)
                {
                    l.LinePattern = LinePattern.Dashed;
                }
            }
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(logY ? $"log10 {yLabel}" : yLabel);
        plot.ShowLegend(legend);
        plot.SavePng(path, 800, 500);
    }

    /// <summary>A trailing moving average over <paramref name="window"/> points, to show a noisy loss's trend.</summary>
    public static double[] Smooth(IReadOnlyList<double> values, int window)
    {
        var result = new double[values.Count];
        double sum = 0;
        for (int i = 0; i < values.Count; i++)
        {
            sum += values[i];
            if (i >= window)
            {
                sum -= values[i - window];
            }
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }

    /// <summary>0, 1, ..., n - 1 as doubles.</summary>
    public static double[] Range(int n) => Enumerable.Range(0, n).Select(i => (double)i).ToArray();
}
